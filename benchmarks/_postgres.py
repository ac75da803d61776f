"""Workload 10: ``PostgresEventStore`` against eventsourcing's PostgreSQL recorder.

Both run against the same server, each in its own scratch schema dropped
afterwards. Appends are one awaited call at a time; a read fetches the whole
branch written by the batch appends.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

from . import _peers
from ._harness import (
    Context,
    Goal,
    Row,
    Unavailable,
    best_rate,
    chunks,
    make_records,
    pg_dsn_reachable,
    side,
)

__all__ = ("WORKLOADS",)

# Per process, so two runs against one server never drop each other's tables.
OUR_SCHEMA = f"eventjournal_bench_{os.getpid()}"
PEER_SCHEMA = f"eventsourcing_bench_{os.getpid()}"


def _store_cls() -> Any:
    try:
        return importlib.import_module("eventstore.postgres").PostgresEventStore
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"eventstore.postgres.PostgresEventStore not available ({exc})") from None


def _drop(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def _ours(ctx: Context) -> dict[str, float]:
    store_cls = _store_cls()
    pg_dsn_reachable(ctx.pg_dsn)
    sizes = ctx.sizes
    single, batched = [], []
    reads = []
    _drop(ctx.pg_dsn, OUR_SCHEMA)
    try:
        async with store_cls(ctx.pg_dsn, schema=OUR_SCHEMA) as store:
            for i in range(sizes.repeats):
                records = make_records(f"one-{i}", sizes.pg_single)
                await store.head(f"one-{i}")
                start = time.perf_counter()
                for record in records:
                    await store.append(record)
                single.append(time.perf_counter() - start)
                groups = list(chunks(make_records(f"many-{i}", sizes.pg_batches * 100), 100))
                start = time.perf_counter()
                for group in groups:
                    await store.append_batch(group)
                batched.append(time.perf_counter() - start)
                start = time.perf_counter()
                events = await store.read(f"many-{i}")
                reads.append(time.perf_counter() - start)
                if len(events) != sizes.pg_batches * 100:
                    raise AssertionError(f"read {len(events)} events back")
    finally:
        _drop(ctx.pg_dsn, OUR_SCHEMA)
    return _rates(sizes.pg_single, sizes.pg_batches * 100, single, batched, reads)


def _rates(
    single_n: int, batch_n: int, single: list[float], batched: list[float], reads: list[float]
) -> dict[str, float]:
    return {
        "single": best_rate(single_n, single),
        "batch": best_rate(batch_n, batched),
        "read": best_rate(batch_n, reads),
    }


async def _peer(ctx: Context) -> dict[str, float]:
    pg_dsn_reachable(ctx.pg_dsn)
    sizes = ctx.sizes
    single, batched, reads = [], [], []
    with _peers.postgres_peer(ctx.pg_dsn, PEER_SCHEMA) as recorder:
        for i in range(sizes.repeats):
            events = _peers.stored_events(f"one-{i}", sizes.pg_single)
            start = time.perf_counter()
            for event in events:
                recorder.insert_events([event])
            single.append(time.perf_counter() - start)
            groups = list(chunks(_peers.stored_events(f"many-{i}", sizes.pg_batches * 100), 100))
            start = time.perf_counter()
            for group in groups:
                recorder.insert_events(group)
            batched.append(time.perf_counter() - start)
            start = time.perf_counter()
            _peers.decode_all(recorder.select_events(f"many-{i}"))
            reads.append(time.perf_counter() - start)
    return _rates(sizes.pg_single, sizes.pg_batches * 100, single, batched, reads)


async def postgres(ctx: Context) -> list[Row]:
    """Single appends, batch-100 appends and a full read on PostgreSQL."""
    rows = [
        Row("postgres append, 1 ev/call", "ev/s", goal=Goal("min_ratio", 1.5, ">= 1.5x es-PG")),
        Row("postgres append, 100 ev/batch", "ev/s", goal=Goal("min_ratio", 1.5, ">= 1.5x es-PG")),
        Row(f"postgres read {ctx.sizes.pg_batches * 100} events", "ev/s"),
    ]
    probe = rows[0]
    ours = await side(probe, "ours", lambda: _ours(ctx))
    peer = await side(probe, "peer", lambda: _peer(ctx))
    for row, key in zip(rows, ("single", "batch", "read"), strict=True):
        row.baseline_name = "eventsourcing PG recorder"
        row.ours = None if ours is None else ours[key]
        row.baseline = None if peer is None else peer[key]
        row.status = probe.status
    return rows


WORKLOADS = (postgres,)
