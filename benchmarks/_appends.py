"""Write workloads: sequential, concurrent and batched appends; the memory store.

Every timed loop appends records built beforehand, one awaited call at a time
per writer, into a fresh store (a fresh root or database per repeat).
"""

from __future__ import annotations

import asyncio
import shutil
import time

from eventstore import EventRecord, EventStore, MemoryEventStore

from . import _limits, _peers
from ._harness import (
    Context,
    Goal,
    Row,
    best_rate,
    chunks,
    file_store,
    make_records,
    record_lines,
    side,
)

__all__ = ("WORKLOADS",)


async def _file_appends(
    ctx: Context, tag: str, durability: str, records: list[EventRecord]
) -> float:
    durations = []
    for i in range(ctx.sizes.repeats):
        root = ctx.path(f"{tag}-{i}")
        store = file_store(root, durability)
        async with store:
            await store.head(records[0].session_id)
            start = time.perf_counter()
            for record in records:
                await store.append(record)
            durations.append(time.perf_counter() - start)
        shutil.rmtree(root, ignore_errors=True)
    return best_rate(len(records), durations)


async def _sqlite_single(ctx: Context, tag: str, events: list[object], row: Row) -> float:
    durations = []
    for i in range(ctx.sizes.repeats):
        peer = _peers.SqlitePeer.fresh(ctx.path(f"{tag}-{i}.sqlite"))
        row.detail["sqlite"] = peer.pragmas()
        start = time.perf_counter()
        for event in events:
            peer.insert([event])
        durations.append(time.perf_counter() - start)
        peer.close()
    return best_rate(len(events), durations)


def _limit(ctx: Context, lines: list[bytes], *, fsync: bool, per: int = 1) -> float:
    path = ctx.path("limit.jsonl")
    best = min(
        _limits.write_lines(path, lines, fsync=fsync, per=per) for _ in range(ctx.sizes.repeats)
    )
    path.unlink()
    return len(lines) / best


async def sequential(ctx: Context) -> list[Row]:
    """Workload 1: one session appending one event at a time, fsync and write."""
    return [
        await _sequential(ctx, "fsync", ctx.sizes.seq_fsync),
        await _sequential(ctx, "write", ctx.sizes.seq_write),
    ]


async def _sequential(ctx: Context, durability: str, count: int) -> Row:
    records = make_records("seq", count)
    row = Row(f"sequential append, durability={durability}", "ev/s")

    async def ours() -> float:
        return await _file_appends(ctx, f"seq-{durability}", durability, records)

    async def peer() -> float:
        return await _sqlite_single(ctx, "seq", _peers.stored_events("seq", count), row)

    row.ours = await side(row, "ours", ours)
    if durability == "fsync":
        # Only the fsync configuration has a like-for-like peer: SQLite's
        # defaults make every commit durable.
        row.baseline_name = "SQLite 1 ev/txn"
        row.baseline = await side(row, "peer", peer)
        row.goal = Goal("min_ratio", 1.0, ">= 1x SQLite")
    row.limit = _limit(ctx, record_lines(records), fsync=durability == "fsync")
    row.detail["events"] = count
    return row


async def _writer(store: EventStore, records: list[EventRecord]) -> None:
    for record in records:
        await store.append(record)


async def concurrent(ctx: Context) -> list[Row]:
    """Workload 2: N sessions appending concurrently, fsync (group commit's case)."""
    sessions, per = ctx.sizes.sessions, ctx.sizes.per_session
    per_session = [make_records(f"c{n:03d}", per) for n in range(sessions)]
    total = sessions * per
    row = Row(f"concurrent append, {sessions} sessions, fsync", "ev/s")

    async def ours() -> float:
        durations = []
        for i in range(ctx.sizes.repeats):
            root = ctx.path(f"conc-{i}")
            store = file_store(root, "fsync")
            async with store:
                start = time.perf_counter()
                await asyncio.gather(*(_writer(store, records) for records in per_session))
                durations.append(time.perf_counter() - start)
            shutil.rmtree(root, ignore_errors=True)
        return best_rate(total, durations)

    async def peer() -> float:
        # SQLite takes one writer at a time, so the same interleaving from one
        # thread is its best case: threads would only add lock waits.
        streams = [_peers.stored_events(f"c{n:03d}", per) for n in range(sessions)]
        interleaved = [stream[k] for k in range(per) for stream in streams]
        return await _sqlite_single(ctx, "conc", interleaved, row)

    row.ours = await side(row, "ours", ours)
    row.baseline_name = "SQLite 1 ev/txn"
    row.baseline = await side(row, "peer", peer)
    row.goal = Goal("min_ratio", 5.0, ">= 5x SQLite")
    row.detail["events"] = total
    return [row]


async def batches(ctx: Context) -> list[Row]:
    """Workload 3: one session appending batches of 100, fsync."""
    count = ctx.sizes.batches * 100
    records = make_records("batch", count)
    row = Row("batch append (100/batch), fsync", "ev/s")

    async def ours() -> float:
        groups = list(chunks(records, 100))
        durations = []
        for i in range(ctx.sizes.repeats):
            root = ctx.path(f"batch-{i}")
            store = file_store(root, "fsync")
            async with store:
                await store.head("batch")
                start = time.perf_counter()
                for group in groups:
                    await store.append_batch(group)
                durations.append(time.perf_counter() - start)
            shutil.rmtree(root, ignore_errors=True)
        return best_rate(count, durations)

    async def peer() -> float:
        groups = list(chunks(_peers.stored_events("batch", count), 100))
        durations = []
        for i in range(ctx.sizes.repeats):
            sqlite = _peers.SqlitePeer.fresh(ctx.path(f"batch-{i}.sqlite"))
            start = time.perf_counter()
            for group in groups:
                sqlite.insert(group)
            durations.append(time.perf_counter() - start)
            sqlite.close()
        return best_rate(count, durations)

    row.ours = await side(row, "ours", ours)
    row.baseline_name = "SQLite 100 ev/txn"
    row.baseline = await side(row, "peer", peer)
    row.goal = Goal("min_ratio", 3.0, ">= 3x SQLite")
    row.limit = _limit(ctx, record_lines(records), fsync=True, per=100)
    row.detail["events"] = count
    return [row]


async def memory(ctx: Context) -> list[Row]:
    """Workload 9: ``MemoryEventStore`` sequential appends against the POPO recorder."""
    count = ctx.sizes.memory_appends
    records = make_records("mem", count)
    row = Row("memory store sequential append", "ev/s")

    async def ours() -> float:
        durations = []
        for _ in range(ctx.sizes.repeats):
            async with MemoryEventStore() as store:
                start = time.perf_counter()
                for record in records:
                    await store.append(record)
                durations.append(time.perf_counter() - start)
        return best_rate(count, durations)

    async def peer() -> float:
        events = _peers.stored_events("mem", count)
        durations = []
        for _ in range(ctx.sizes.repeats):
            recorder = _peers.popo_recorder()
            start = time.perf_counter()
            for event in events:
                recorder.insert_events([event])
            durations.append(time.perf_counter() - start)
        return best_rate(count, durations)

    row.ours = await side(row, "ours", ours)
    row.baseline_name = "POPO recorder"
    row.baseline = await side(row, "peer", peer)
    row.goal = Goal("min_ratio", 1.0, ">= 1x POPO")
    row.detail["events"] = count
    return [row]


WORKLOADS = (sequential, concurrent, batches, memory)
