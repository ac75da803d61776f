"""Quickstart: record an agent's session and watch it arrive live.

An "agent" answers a user in a dozen steps: phases, a thought, tool calls and
their results, the final answer. Every step is one ``journal.record()`` on the
embedded file store. A subscriber, started before the agent, prints each event
the moment it is stored. Then we look back: the log on disk, a replay of the
state at any step with ``fold()``, and a late subscriber that catches up.

Run: ``python examples/quickstart.py [ROOT]`` (a temporary directory by default).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventstore import EventRecord
from journal import EventJournal, Subscription, open_journal

SESSION = "trip-planner"

STEPS: list[tuple[str, dict[str, Any]]] = [
    ("message", {"role": "user", "text": "I land in Lisbon on Friday. Umbrella or sunscreen?"}),
    ("phase", {"name": "plan"}),
    ("thought", {"text": "Need the forecast for Friday, then pack accordingly."}),
    ("tool_call", {"tool": "weather", "args": {"city": "Lisbon", "day": "Friday"}}),
    ("tool_result", {"tool": "weather", "result": {"sky": "sunny", "high_c": 27, "uv": 8}}),
    ("phase", {"name": "research"}),
    ("tool_call", {"tool": "search", "args": {"q": "Lisbon Friday evening"}}),
    ("tool_result", {"tool": "search", "result": ["sunset at Miradouro", "Fado in Alfama"]}),
    ("phase", {"name": "answer"}),
    (
        "message",
        {
            "role": "assistant",
            "text": "Sunscreen: 27°C and UV 8. Catch the sunset at a miradouro, then fado.",
        },
    ),
    ("phase", {"name": "done"}),
]

ICONS = {"message": ">", "phase": "*", "thought": "~", "tool_call": "$", "tool_result": "<"}


def describe(event: EventRecord) -> str:
    data = event.data
    if event.kind == "message":
        return f"{data['role']}: {data['text']}"
    if event.kind == "phase":
        return f"── {data['name']} ──"
    if event.kind == "thought":
        return f"({data['text']})"
    if event.kind == "tool_call":
        args = ", ".join(f"{k}={v!r}" for k, v in data["args"].items())
        return f"{data['tool']}({args})"
    return f"{data['tool']} → {data['result']}"


def line(event: EventRecord) -> str:
    # recorded_at is stamped before the write, so this includes the fsync.
    latency_ms = (datetime.now(UTC) - event.recorded_at).total_seconds() * 1000
    icon = ICONS.get(event.kind, "-")
    return f"  {latency_ms:6.1f} ms  #{event.sequence:<3} {icon} {event.kind:<12} {describe(event)}"


async def watch(live: Subscription) -> None:
    async for event in live:
        print(line(event), flush=True)
        if event.kind == "phase" and event.data["name"] == "done":
            return


async def agent(journal: EventJournal) -> None:
    for kind, data in STEPS:
        await journal.record(SESSION, kind, data)
        await asyncio.sleep(0.01)  # a real agent thinks between steps


def tools_used(state: list[str], event: EventRecord) -> list[str]:
    return [*state, event.data["tool"]] if event.kind == "tool_call" else state


async def main(root: Path, keep: bool) -> None:
    print(f"eventjournal quickstart: session {SESSION!r} in {root}")
    print("a live subscriber prints each step as the agent records it\n")
    print(f"  {'latency':>9}  {'step':<4} {'kind':<14} what")
    async with open_journal(root) as journal:
        async with journal.subscribe(SESSION) as live:
            watcher = asyncio.create_task(watch(live))
            await agent(journal)
            await watcher
        head = await journal.head(SESSION)
        print(f"\n{head} steps; latency is from record() to the subscriber, fsync included.")

        log = root / SESSION / "main.jsonl"
        print(f"\nThe log is plain JSON lines ({log.stat().st_size} bytes). Line 2:")
        print("  " + log.read_text(encoding="utf-8").splitlines()[1])

        at_step_5 = await journal.fold(SESSION, tools_used, [], to_sequence=5)
        now = await journal.fold(SESSION, tools_used, [])
        print(f"\nfold() time travel: tools used by step 5 = {at_step_5}, by the end = {now}")

        async with journal.subscribe(SESSION, after_sequence=head - 2) as late:
            caught_up = [await anext(late) for _ in range(2)]
        print(f"a late subscriber from #{head - 2} replays: {[e.kind for e in caught_up]}")
    if keep:
        print(f"\ntry: jq -c '{{sequence, kind, data}}' {log}")
    else:
        print("\n(pass a directory to keep the log: python examples/quickstart.py ./events)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1]), keep=True))
    else:
        with tempfile.TemporaryDirectory(prefix="eventjournal-") as tmp:
            asyncio.run(main(Path(tmp), keep=False))
