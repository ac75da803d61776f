"""Write workloads: sequential, concurrent and batched appends; the memory store.

Every timed loop appends records built beforehand, one awaited call at a time
per writer, into a fresh store (a fresh root or database per round). Ours, the
peer and the limit take turns round by round (see :func:`rounds`), so a burst
of load from a neighbour slows all three alike.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

from eventstore import EventRecord, EventStore, MemoryEventStore

from . import _limits, _peers
from ._harness import (
    Context,
    Goal,
    Row,
    chunks,
    file_store,
    make_records,
    record_lines,
    rounds,
)

__all__ = ("WORKLOADS",)

#: One JSONL line of the size our records encode to, for the multi-file limit.
_LINE = record_lines(make_records("limit", 1))[0]

Timed = Callable[[], Awaitable[float]]


def _our_file(
    ctx: Context, tag: str, durability: str, groups: list[list[EventRecord]], *, batch: bool
) -> Timed:
    """One round: a fresh root, then every group appended (one call per record or per group)."""
    counter = itertools.count()

    async def once() -> float:
        root = ctx.path(f"{tag}-{next(counter)}")
        async with file_store(root, durability) as store:
            await store.head(groups[0][0].session_id)
            start = time.perf_counter()
            for group in groups:
                if batch:
                    await store.append_batch(group)
                else:
                    for record in group:
                        await store.append(record)
            took = time.perf_counter() - start
        shutil.rmtree(root, ignore_errors=True)
        return took

    return once


def _sqlite(
    ctx: Context,
    tag: str,
    build: Callable[[], list[list[Any]]],
    row: Row,
    *,
    untimed: int = 0,
    synchronous: str | None = None,
) -> Timed:
    """One round: a fresh SQLite file, one ``insert_events`` call per group.

    ``build`` makes the groups on the first round, outside the clock; it raises
    :class:`Unavailable` when eventsourcing is not installed. The first
    ``untimed`` groups are inserted before the clock starts. ``synchronous``
    overrides the datastore's default (FULL) on every connection.
    """
    counter = itertools.count()
    built: list[list[list[Any]]] = []

    async def once() -> float:
        if not built:
            built.append(build())
        groups = built[0]
        peer = _peers.SqlitePeer.fresh(
            ctx.path(f"{tag}-{next(counter)}.sqlite"), synchronous=synchronous
        )
        row.detail["sqlite"] = peer.pragmas()
        for group in groups[:untimed]:
            peer.insert(group)
        start = time.perf_counter()
        for group in groups[untimed:]:
            peer.insert(group)
        took = time.perf_counter() - start
        peer.close()
        return took

    return once


def _limit(ctx: Context, lines: list[bytes], *, fsync: bool, per: int = 1) -> Timed:
    async def once() -> float:
        return _limits.write_lines(ctx.path("limit.jsonl"), lines, fsync=fsync, per=per)

    return once


async def sequential(ctx: Context) -> list[Row]:
    """Workload 1: one session appending one event at a time, fsync and write.

    Each durability has its like-for-like peer: SQLite in WAL mode with
    ``synchronous=FULL`` (eventsourcing's default: every commit syncs the WAL)
    for ``"fsync"``, with ``synchronous=NORMAL`` (commits reach the OS, synced at
    checkpoints) for ``"write"``. ``"write"`` also has a goal against the bare
    ``os.write`` loop of the same lines: a second row from the same rounds.
    """
    fsync = await _sequential(ctx, "fsync", ctx.sizes.seq_fsync)
    write = await _sequential(ctx, "write", ctx.sizes.seq_write)
    return [fsync, write, _against_limit(write, "bare os.write", 0.25)]


#: SQLite's ``PRAGMA synchronous`` values by number, as read back.
_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}

#: The peer's ``synchronous`` for each of our durabilities, and the goal against it.
_SEQUENTIAL_PEER = {"fsync": ("FULL", 1.2), "write": ("NORMAL", 3.0)}


async def _sequential(ctx: Context, durability: str, count: int) -> Row:
    records = make_records("seq", count)
    row = Row(f"sequential append, durability={durability}", "ev/s")
    synchronous, goal = _SEQUENTIAL_PEER[durability]
    sides = {"ours": _our_file(ctx, f"seq-{durability}", durability, [records], batch=False)}
    sides["peer"] = _sqlite(
        ctx,
        f"seq-{durability}",
        lambda: _singles("seq", count),
        row,
        synchronous=None if synchronous == "FULL" else synchronous,
    )
    row.baseline_name = f"SQLite {synchronous}, 1 ev/txn"
    row.goal = Goal("min_ratio", goal, f">= {goal:g}x SQLite {synchronous}")
    sides["limit"] = _limit(ctx, record_lines(records), fsync=durability == "fsync")
    await rounds(ctx, row, count, sides)
    row.detail["events"] = count
    _name_sqlite(row)
    return row


def _name_sqlite(row: Row) -> None:
    """Name the SQLite baseline by the pragmas read back from its database."""
    pragmas = row.detail.get("sqlite")
    if pragmas:
        mode = str(pragmas["journal_mode"]).upper()
        level = _SYNC_NAMES.get(pragmas["synchronous"], str(pragmas["synchronous"]))
        per_txn = row.baseline_name.removeprefix("SQLite ").rsplit(", ", 1)[-1]
        row.baseline_name = f"SQLite {mode} {level}, {per_txn}"


def _against_limit(row: Row, limit_name: str, goal: float) -> Row:
    """A second row for ``row``'s rounds: ours against its physical-limit column."""
    derived = Row(f"{row.workload}, vs limit", row.unit, status=row.status)
    derived.ours, derived.baseline = row.ours, row.limit
    derived.baseline_name = f"limit: {limit_name}"
    derived.goal = Goal("min_ratio", goal, f">= {goal:g}x limit")
    derived.detail = {"of": row.workload}
    return derived


def _singles(originator_id: str, count: int) -> list[list[Any]]:
    return [[event] for event in _peers.stored_events(originator_id, count)]


async def _writer(store: EventStore, records: list[EventRecord]) -> None:
    for record in records:
        await store.append(record)


async def concurrent(ctx: Context) -> list[Row]:
    """Workload 2: N sessions appending concurrently, fsync (group commit's case).

    Each session's first event, which creates its directory and log, goes in
    before the clock starts (on both sides): the row is the steady state.
    """
    sessions, per = ctx.sizes.sessions, ctx.sizes.per_session
    per_session = [make_records(f"c{n:03d}", per) for n in range(sessions)]
    total = sessions * (per - 1)
    row = Row(f"concurrent append, {sessions} sessions, fsync", "ev/s")
    counter = itertools.count()

    async def ours() -> float:
        root = ctx.path(f"conc-{next(counter)}")
        async with file_store(root, "fsync") as store:
            await asyncio.gather(*(_writer(store, records[:1]) for records in per_session))
            start = time.perf_counter()
            await asyncio.gather(*(_writer(store, records[1:]) for records in per_session))
            took = time.perf_counter() - start
        shutil.rmtree(root, ignore_errors=True)
        return took

    # SQLite takes one writer at a time, so the same interleaving from one
    # thread is its best case: threads would only add lock waits.
    def interleaved() -> list[list[Any]]:
        streams = [_peers.stored_events(f"c{n:03d}", per) for n in range(sessions)]
        return [[stream[k]] for k in range(per) for stream in streams]

    async def limit() -> float:
        return _limits.write_rounds(ctx.path("limit-files"), sessions, per - 1, _LINE)

    sides: dict[str, Timed] = {
        "ours": ours,
        "peer": _sqlite(ctx, "conc", interleaved, row, untimed=sessions),
        "limit": limit,
    }
    row.baseline_name = "SQLite 1 ev/txn"
    row.goal = Goal("min_ratio", 5.0, ">= 5x SQLite")
    await rounds(ctx, row, total, sides)
    row.detail["events"] = total
    _name_sqlite(row)
    return [row]


async def batches(ctx: Context) -> list[Row]:
    """Workload 3: one session appending batches of 100, fsync."""
    count = ctx.sizes.batches * 100
    records = make_records("batch", count)
    row = Row("batch append (100/batch), fsync", "ev/s")
    sides = {"ours": _our_file(ctx, "batch", "fsync", list(chunks(records, 100)), batch=True)}
    sides["peer"] = _sqlite(
        ctx, "batch", lambda: list(chunks(_peers.stored_events("batch", count), 100)), row
    )
    sides["limit"] = _limit(ctx, record_lines(records), fsync=True, per=100)
    row.baseline_name = "SQLite 100 ev/txn"
    await rounds(ctx, row, count, sides)
    row.detail["events"] = count
    _name_sqlite(row)
    # The goal is against the disk: one fsync per 100-line batch (3x SQLite,
    # the old goal, was above what one sync per batch allows on this machine).
    return [row, _against_limit(row, "1 fsync per batch", 0.7)]


async def memory(ctx: Context) -> list[Row]:
    """Workload 9: ``MemoryEventStore`` sequential appends against the POPO recorder."""
    count = ctx.sizes.memory_appends
    records = make_records("mem", count)
    row = Row("memory store sequential append", "ev/s")

    async def ours() -> float:
        async with MemoryEventStore() as store:
            start = time.perf_counter()
            for record in records:
                await store.append(record)
            return time.perf_counter() - start

    events: list[Any] = []

    async def peer() -> float:
        recorder = _peers.popo_recorder()
        events[:] = events or _peers.stored_events("mem", count)
        start = time.perf_counter()
        for event in events:
            recorder.insert_events([event])
        return time.perf_counter() - start

    sides = {"ours": ours, "peer": peer}
    row.baseline_name = "POPO recorder"
    row.goal = Goal("min_ratio", 1.0, ">= 1x POPO")
    await rounds(ctx, row, count, sides)
    row.detail["events"] = count
    return [row]


async def new_sessions(ctx: Context) -> list[Row]:
    """Workload 11: N new sessions of one event each against N appends to existing ones.

    Both sides are the same shape, over one ``FileEventStore(durability="fsync")``:
    ``sessions`` writer tasks, each appending one event at a time to its share
    of N sessions, concurrently (so group commit applies alike). The N existing
    sessions get their first event once, before any clock; each round then
    times one more event to each of them, and the first event of N sessions
    never seen before. The store keeps growing, so a new session is always
    created among many.
    """
    count = ctx.sizes.new_sessions
    writers = min(ctx.sizes.sessions, count)
    rounds_count = ctx.sizes.repeats
    row = Row(f"{count:,} new sessions, 1 event each, fsync", "ev/s")
    existing = [make_records(f"e{n:05d}", rounds_count + 1) for n in range(count)]
    fresh = iter(
        [make_records(f"r{r}n{n:05d}", 1) for n in range(count)] for r in range(rounds_count)
    )
    turn = itertools.count(1)

    def shares(records: list[EventRecord]) -> list[list[EventRecord]]:
        return [records[w::writers] for w in range(writers)]

    async def timed(store: EventStore, records: list[EventRecord]) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_writer(store, share) for share in shares(records)))
        return time.perf_counter() - start

    root = ctx.path("new-sessions")
    try:
        async with file_store(root, "fsync") as store:
            await timed(store, [stream[0] for stream in existing])

            async def new() -> float:
                return await timed(store, [records[0] for records in next(fresh)])

            async def appended() -> float:
                sequence = next(turn)
                return await timed(store, [stream[sequence] for stream in existing])

            row.baseline_name = f"ours, {count:,} appends to existing sessions"
            row.goal = Goal("min_ratio", 0.5, ">= 0.5x existing")
            await rounds(ctx, row, count, {"ours": new, "peer": appended})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    row.detail.update(events=count, writers=writers)
    return [row]


WORKLOADS = (sequential, concurrent, batches, memory, new_sessions)
