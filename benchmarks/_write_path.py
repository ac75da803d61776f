"""The file store's write path against SQLite and the physical limit (issue 16).

Three rows, each side (ours, the SQLite peer, the bare-syscall limit) timed in
turns, round by round, so a neighbour's burst of load slows all alike; the
fastest round of each side counts::

    sequential append, durability="write"   vs SQLite WAL synchronous=NORMAL, bare os.write loop
    sequential append, durability="fsync"   vs SQLite WAL synchronous=FULL,   os.write + fsync
    batch-100 append, fsync                 vs SQLite 100 ev/txn,              one fsync per batch

Run it alone (``python -m benchmarks._write_path [--events N] [--repeats R]``)
or call :func:`measure` from the harness: it returns one dict per row with
``ours``, ``peer``, ``limit`` (events/s) and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from eventstore import EventRecord
from eventstore.file import FileEventStore

from . import _limits, _peers
from ._harness import chunks, make_records, record_lines

__all__ = ("measure", "main")

Timed = Callable[[], Awaitable[float]]


def _ours(root: Path, durability: str, groups: list[list[EventRecord]], *, batch: bool) -> Timed:
    counter = itertools.count()

    async def once() -> float:
        path = root / f"ours-{durability}-{next(counter)}"
        store = FileEventStore(path, durability=durability)  # type: ignore[arg-type]
        async with store:
            await store.head(groups[0][0].session_id)
            start = time.perf_counter()
            for group in groups:
                if batch:
                    await store.append_batch(group)
                else:
                    for record in group:
                        await store.append(record)
            took = time.perf_counter() - start
        shutil.rmtree(path, ignore_errors=True)
        return took

    return once


#: ``synchronous`` for the SQLite connections the peer opens next (see :func:`_patch_sqlite`).
_SYNCHRONOUS = ["FULL"]


def _patch_sqlite() -> None:
    """Make every connection eventsourcing opens set ``PRAGMA synchronous`` first.

    The pragma cannot change inside a transaction, and the datastore only
    hands out connections inside one, so it is set where they are made.
    """
    from eventsourcing.sqlite import SQLiteConnectionPool

    create = SQLiteConnectionPool._create_connection
    if getattr(create, "_write_path", False):
        return

    def patched(self: Any) -> Any:
        conn = create(self)
        conn._sqlite_conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[0]}")
        return conn

    patched._write_path = True  # type: ignore[attr-defined]
    SQLiteConnectionPool._create_connection = patched  # type: ignore[method-assign]


def _sqlite(root: Path, groups: list[list[Any]], synchronous: str) -> Timed:
    counter = itertools.count()

    async def once() -> float:
        _patch_sqlite()
        _SYNCHRONOUS[0] = synchronous
        peer = _peers.SqlitePeer.fresh(root / f"peer-{synchronous}-{next(counter)}.sqlite")
        try:
            pragmas = peer.pragmas()
            want = {"NORMAL": 1, "FULL": 2}[synchronous]
            if pragmas.get("synchronous") != want or pragmas.get("journal_mode") != "wal":
                raise RuntimeError(f"SQLite peer not in WAL synchronous={synchronous}: {pragmas}")
            start = time.perf_counter()
            for group in groups:
                peer.insert(group)
            return time.perf_counter() - start
        finally:
            peer.close()

    return once


def _limit(root: Path, lines: list[bytes], *, fsync: bool, per: int = 1) -> Timed:
    async def once() -> float:
        return _limits.write_lines(root / "limit.jsonl", lines, fsync=fsync, per=per)

    return once


async def _turns(sides: dict[str, Timed], repeats: int) -> dict[str, list[float]]:
    durations: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, once in sides.items():
            durations[name].append(await once())
    return durations


def _row(name: str, count: int, durations: dict[str, list[float]]) -> dict[str, Any]:
    rates = {side: count / min(d) for side, d in durations.items()}
    row: dict[str, Any] = {"row": name, "events": count, **rates}
    row["ours/limit"] = rates["ours"] / rates["limit"]
    if "peer" in rates:
        row["ours/peer"] = rates["ours"] / rates["peer"]
    row["rounds_s"] = durations
    return row


async def measure(
    root: Path, *, write_events: int, fsync_events: int, batches: int, repeats: int = 3
) -> list[dict[str, Any]]:
    """The three rows (see the module docstring), measured under ``root``."""
    rows = []
    records = make_records("seqw", write_events)
    sides = {
        "ours": _ours(root, "write", [records], batch=False),
        "peer": _sqlite(root, [[e] for e in _peers.stored_events("seqw", write_events)], "NORMAL"),
        "limit": _limit(root, record_lines(records), fsync=False),
    }
    rows.append(
        _row('sequential append, durability="write"', write_events, await _turns(sides, repeats))
    )
    records = make_records("seqf", fsync_events)
    sides = {
        "ours": _ours(root, "fsync", [records], batch=False),
        "peer": _sqlite(root, [[e] for e in _peers.stored_events("seqf", fsync_events)], "FULL"),
        "limit": _limit(root, record_lines(records), fsync=True),
    }
    rows.append(_row("sequential append, fsync", fsync_events, await _turns(sides, repeats)))
    count = batches * 100
    records = make_records("batch", count)
    sides = {
        "ours": _ours(root, "fsync", list(chunks(records, 100)), batch=True),
        "peer": _sqlite(root, list(chunks(_peers.stored_events("batch", count), 100)), "FULL"),
        "limit": _limit(root, record_lines(records), fsync=True, per=100),
    }
    rows.append(_row("batch-100 append, fsync", count, await _turns(sides, repeats)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._write_path")
    parser.add_argument("--write-events", type=int, default=50_000)
    parser.add_argument("--fsync-events", type=int, default=3_000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="write-path-") as tmp:
        rows = asyncio.run(
            measure(
                Path(tmp),
                write_events=args.write_events,
                fsync_events=args.fsync_events,
                batches=args.batches,
                repeats=args.repeats,
            )
        )
    for row in rows:
        peer = f"{row['peer']:>10,.0f}" if "peer" in row else " " * 10
        ratio = f"{row['ours/peer']:.2f}x" if "ours/peer" in row else ""
        print(
            f"{row['row']:<40} ours {row['ours']:>10,.0f}  peer {peer}"
            f"  limit {row['limit']:>10,.0f}"
            f"  ours/limit {row['ours/limit']:6.1%}  ours/peer {ratio}"
        )


if __name__ == "__main__":
    main()
