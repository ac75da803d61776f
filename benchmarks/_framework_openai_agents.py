"""OpenAI Agents SDK sessions: ``JournalSession`` against the SDK's ``SQLiteSession``.

One conversation of ``steps`` turns, each ``add_items`` of one item (what a
run stores per model or tool output). Then the latest item read ``steps``
times (``get_items(limit=1)``), the last 20 (a bounded history window, as
``SessionSettings(limit=20)`` reads) ``steps`` times, the whole history read
``steps // 50`` times, and ``steps // 10`` items popped (a rewind). The SDK
has no lookup of one item by id, so there is no "get by id" row.

* ours: :class:`~journal.integrations.openai_agents.JournalSession` on a
  :class:`~eventstore.FileEventStore` with ``durability="fsync"``;
* peer: ``agents.memory.SQLiteSession`` on a file database (the SDK sets WAL;
  ``synchronous`` is left at SQLite's default, read back into ``peer_config``).

Rows are ``{"name", "unit", "ours", "peer", "ratio", "ratio_range",
"peer_config"}``, throughputs in calls per second (medians over the rounds),
``ratio = ours / peer`` (above 1: we are faster).

Run: ``python -m benchmarks._framework_openai_agents [STEPS]``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ("run",)


def _items(steps: int) -> list[dict[str, Any]]:
    return [
        {"role": "assistant" if n % 2 else "user", "content": f"turn {n}: " + "words " * 20}
        for n in range(steps)
    ]


def _counts(steps: int) -> dict[str, int]:
    return {
        "add": steps,
        "get latest": steps,
        "get last 20": steps,
        "get all": max(1, steps // 50),
        "pop": max(1, steps // 10),
    }


async def _workload(session: Any, items: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each operation kind."""
    counts = _counts(len(items))
    spent: dict[str, float] = {}
    clock = time.perf_counter

    started = clock()
    for item in items:
        await session.add_items([item])
    spent["add"] = clock() - started

    started = clock()
    for _ in range(counts["get latest"]):
        assert (await session.get_items(limit=1)) == items[-1:]
    spent["get latest"] = clock() - started

    started = clock()
    for _ in range(counts["get last 20"]):
        assert len(await session.get_items(limit=20)) == min(20, len(items))
    spent["get last 20"] = clock() - started

    started = clock()
    for _ in range(counts["get all"]):
        assert len(await session.get_items()) == len(items)
    spent["get all"] = clock() - started

    started = clock()
    for n in range(counts["pop"]):
        assert (await session.pop_item()) == items[-1 - n]
    spent["pop"] = clock() - started
    return spent


async def _ours(root: Path, items: list[dict[str, Any]]) -> dict[str, float]:
    from journal import open_journal
    from journal.integrations.openai_agents import JournalSession

    async with open_journal(root, durability="fsync") as journal:
        return await _workload(JournalSession("bench", journal), items)


async def _peer(path: Path, items: list[dict[str, Any]]) -> dict[str, float]:
    from agents.memory.sqlite_session import SQLiteSession

    session = SQLiteSession("bench", db_path=path)
    try:
        return await _workload(session, items)
    finally:
        session.close()


def _pragmas(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        return {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
        }


def run(steps: int = 1000, rounds: int = 3) -> list[dict[str, Any]]:
    """Measure both sessions on one conversation of ``steps`` items; one row per operation.

    ``rounds`` alternate ours and the peer's, each on fresh files.
    """
    return alternate(rounds, _items(steps), _ours, _peer, _counts(steps))


def alternate(
    rounds: int,
    work: Any,
    ours: Callable[[Path, Any], Awaitable[dict[str, float]]],
    peer: Callable[[Path, Any], Awaitable[dict[str, float]]],
    counts: dict[str, int],
) -> list[dict[str, Any]]:
    """``rounds`` of ours then the peer's on ``work``, each on fresh files; the rows.

    The peer's SQLite settings are read back from its last database.
    """
    mine: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    pragmas: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(rounds):
            mine.append(asyncio.run(ours(Path(tmp) / f"journal-{n}", work)))
            path = Path(tmp) / f"peer-{n}.sqlite"
            theirs.append(asyncio.run(peer(path, work)))
            pragmas = _pragmas(path)
    return _rows(counts, mine, theirs, pragmas)


def _rows(
    counts: dict[str, int],
    ours: list[dict[str, float]],
    peer: list[dict[str, float]],
    peer_config: dict[str, Any],
) -> list[dict[str, Any]]:
    rows = []
    for name, count in counts.items():
        ops = [count / r[name] for r in ours]
        peer_ops = [count / r[name] for r in peer]
        ratios = [a / b for a, b in zip(ops, peer_ops, strict=True)]
        rows.append(
            {
                "name": name,
                "unit": "calls/s",
                "ours": round(statistics.median(ops), 1),
                "peer": round(statistics.median(peer_ops), 1),
                "ratio": round(statistics.median(ratios), 2),
                "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
                "peer_config": peer_config,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000):
        print(row)
