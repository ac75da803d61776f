"""Google ADK sessions: ``JournalSessionService`` against ADK's ``SqliteSessionService``.

One session of ``steps`` events, every fifth carrying a state delta (a session
key, and now and then an ``app:`` or ``user:`` key), as a run appends them.
Then the session read ``steps`` times with its latest event
(``GetSessionConfig(num_recent_events=1)``, what a resumed turn needs),
whole ``steps // 50`` times, ``steps // 10`` more sessions created, and the
app's sessions listed ``steps // 50`` times. ADK has no lookup of one event by
id, so there is no "get by id" row.

* ours: :class:`~journal.integrations.adk.JournalSessionService` on a
  :class:`~eventstore.FileEventStore` with ``durability="fsync"``;
* peer: ``google.adk.sessions.SqliteSessionService`` on a file database
  (``journal_mode`` and ``synchronous`` read back into ``peer_config``).

Rows as :mod:`benchmarks._framework_openai_agents`' (``ratio = ours / peer``).

Run: ``python -m benchmarks._framework_adk [STEPS]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ._framework_openai_agents import alternate

__all__ = ("run",)

APP = "bench-app"


def _counts(steps: int) -> dict[str, int]:
    return {
        "append_event": steps,
        "get latest": steps,
        "get whole": max(1, steps // 50),
        "create": max(1, steps // 10),
        "list": max(1, steps // 50),
    }


def _events(steps: int) -> list[Any]:
    from google.adk.events.event import Event
    from google.adk.events.event_actions import EventActions
    from google.genai import types

    events = []
    for n in range(steps):
        delta: dict[str, Any] = {}
        if n % 5 == 0:
            delta["turn"] = n
        if n % 50 == 0:
            delta["app:seen"] = n
            delta["user:last"] = n
        events.append(
            Event(
                invocation_id=f"inv-{n // 4}",
                author="model" if n % 2 else "user",
                timestamp=1_700_000_000.0 + n,
                content=types.Content(
                    role="model" if n % 2 else "user",
                    parts=[types.Part(text=f"turn {n}: " + "words " * 20)],
                ),
                actions=EventActions(state_delta=delta),
            )
        )
    return events


async def _workload(service: Any, events: list[Any]) -> dict[str, float]:
    from google.adk.sessions.base_session_service import GetSessionConfig

    counts = _counts(len(events))
    spent: dict[str, float] = {}
    clock = time.perf_counter
    session = await service.create_session(app_name=APP, user_id="u", session_id="main")

    started = clock()
    for event in events:
        await service.append_event(session, event.model_copy(deep=True))
    spent["append_event"] = clock() - started

    latest = GetSessionConfig(num_recent_events=1)
    started = clock()
    for _ in range(counts["get latest"]):
        got = await service.get_session(app_name=APP, user_id="u", session_id="main", config=latest)
        assert got.events[0].id == events[-1].id
    spent["get latest"] = clock() - started

    started = clock()
    for _ in range(counts["get whole"]):
        got = await service.get_session(app_name=APP, user_id="u", session_id="main")
        assert len(got.events) == len(events)
    spent["get whole"] = clock() - started

    started = clock()
    for n in range(counts["create"]):
        await service.create_session(app_name=APP, user_id=f"user-{n % 7}", state={"n": n})
    spent["create"] = clock() - started

    started = clock()
    for _ in range(counts["list"]):
        listed = await service.list_sessions(app_name=APP)
        assert len(listed.sessions) == counts["create"] + 1
    spent["list"] = clock() - started
    return spent


async def _ours(root: Path, events: list[Any]) -> dict[str, float]:
    from journal import open_journal
    from journal.integrations.adk import JournalSessionService

    async with open_journal(root, durability="fsync") as journal:
        return await _workload(JournalSessionService(journal), events)


async def _peer(path: Path, events: list[Any]) -> dict[str, float]:
    from google.adk.sessions.sqlite_session_service import SqliteSessionService

    service = SqliteSessionService(str(path))
    try:
        return await _workload(service, events)
    finally:
        await service.close()


def run(steps: int = 1000, rounds: int = 3) -> list[dict[str, Any]]:
    """Measure both services on one session of ``steps`` events; one row per operation.

    ``rounds`` alternate ours and the peer's, each on fresh files.
    """
    return alternate(rounds, _events(steps), _ours, _peer, _counts(steps))


if __name__ == "__main__":
    for row in run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000):
        print(row)
