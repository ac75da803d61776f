"""Workload 10: ``PostgresEventStore`` against eventsourcing's PostgreSQL recorder.

Both run against the same server, each in its own scratch schema dropped
afterwards. Appends are one awaited call at a time; a read fetches the whole
branch written by the batch appends. Ours and the peer take turns in short
slices; each side's rate is the median of its slices (see :func:`postgres`).
"""

from __future__ import annotations

import functools
import importlib
import os
import time
from contextlib import AsyncExitStack
from typing import Any

from eventstore._json import encode

from . import _peers
from ._harness import (
    Context,
    Goal,
    Row,
    Unavailable,
    chunks,
    make_records,
    median,
    pg_dsn_reachable,
    side,
)

__all__ = ("WORKLOADS",)

# Per process, so two runs against one server never drop each other's tables.
OUR_SCHEMA = f"eventjournal_bench_{os.getpid()}"
PEER_SCHEMA = f"eventsourcing_bench_{os.getpid()}"
LIMIT_SCHEMA = f"eventjournal_limit_{os.getpid()}"


def _store_cls() -> Any:
    try:
        return importlib.import_module("eventstore.postgres").PostgresEventStore
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"eventstore.postgres.PostgresEventStore not available ({exc})") from None


def _drop(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


#: Appends per slice (single appends, batches of 100) and reads per turn: ours and
#: the peer alternate slice by slice, so a burst of load hits both alike.
SINGLE_SLICE = 50
BATCH_SLICE = 5
READS = 5


class _Ours:
    """Our store in its scratch schema; each method times one slice."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store: Any = None

    async def __aenter__(self) -> _Ours:
        store_cls = _store_cls()
        pg_dsn_reachable(self.ctx.pg_dsn)
        _drop(self.ctx.pg_dsn, OUR_SCHEMA)
        self.store = store_cls(self.ctx.pg_dsn, schema=OUR_SCHEMA)
        await self.store.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.store is not None:
                await self.store.close()
        finally:
            _drop(self.ctx.pg_dsn, OUR_SCHEMA)

    def records(self, session: str, count: int) -> list[Any]:
        return make_records(session, count)

    async def single(self, records: list[Any]) -> float:
        append = self.store.append
        start = time.perf_counter()
        for record in records:
            await append(record)
        return time.perf_counter() - start

    async def batch(self, groups: list[list[Any]]) -> float:
        start = time.perf_counter()
        for group in groups:
            await self.store.append_batch(group)
        return time.perf_counter() - start

    async def read(self, session: str, count: int) -> float:
        start = time.perf_counter()
        events = await self.store.read(session)
        took = time.perf_counter() - start
        if len(events) != count:
            raise AssertionError(f"read {len(events)} events back, expected {count}")
        return took


class _Limit:
    """The same rows through bare asyncpg: one table, its primary key, one statement each.

    What the server and the driver allow with nothing of a store: no head
    check, no lock, no feed, no notification, no session row; a read fetches
    the rows without building records. One commit per call, like the others.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.conn: Any = None

    async def __aenter__(self) -> _Limit:
        try:
            import asyncpg
        except ImportError as exc:
            raise Unavailable(f"asyncpg not installed ({exc})") from None
        pg_dsn_reachable(self.ctx.pg_dsn)
        _drop(self.ctx.pg_dsn, LIMIT_SCHEMA)
        self.conn = await asyncpg.connect(self.ctx.pg_dsn)
        await self.conn.execute(
            f"CREATE SCHEMA {LIMIT_SCHEMA}; CREATE TABLE {LIMIT_SCHEMA}.events ("
            "session_id text, branch_id text, sequence bigint, event_id text, kind text,"
            " data json, metadata json, recorded_at timestamptz, position bigint,"
            " PRIMARY KEY (session_id, branch_id, sequence))"
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.conn is not None:
                await self.conn.close()
        finally:
            _drop(self.ctx.pg_dsn, LIMIT_SCHEMA)

    def records(self, session: str, count: int) -> list[Any]:
        return make_records(session, count)

    async def single(self, records: list[Any]) -> float:
        sql = (
            f"INSERT INTO {LIMIT_SCHEMA}.events VALUES"
            " ($1, $2, $3, $4, $5, $6::text::json, $7::text::json, $8, $3)"
        )
        fetchrow = self.conn.fetchrow
        start = time.perf_counter()
        for r in records:
            await fetchrow(
                sql,
                r.session_id,
                r.branch_id,
                r.sequence,
                r.event_id,
                r.kind,
                encode(r.data).decode(),
                encode(r.metadata).decode(),
                r.recorded_at,
            )
        return time.perf_counter() - start

    async def batch(self, groups: list[list[Any]]) -> float:
        sql = (
            f"INSERT INTO {LIMIT_SCHEMA}.events SELECT $1, $2, u.seq, u.id, u.kind,"
            " u.data::json, u.meta::json, u.at, u.seq FROM unnest($3::bigint[], $4::text[],"
            " $5::text[], $6::text[], $7::text[], $8::timestamptz[]) AS u(seq, id, kind, data,"
            " meta, at)"
        )
        start = time.perf_counter()
        for group in groups:
            await self.conn.execute(
                sql,
                group[0].session_id,
                group[0].branch_id,
                [r.sequence for r in group],
                [r.event_id for r in group],
                [r.kind for r in group],
                [encode(r.data).decode() for r in group],
                [encode(r.metadata).decode() for r in group],
                [r.recorded_at for r in group],
            )
        return time.perf_counter() - start

    async def read(self, session: str, count: int) -> float:
        sql = (
            "SELECT branch_id, sequence, event_id, kind, data, metadata, recorded_at, position"
            f" FROM {LIMIT_SCHEMA}.events WHERE session_id = $1 ORDER BY sequence"
        )
        start = time.perf_counter()
        rows = await self.conn.fetch(sql, session)
        took = time.perf_counter() - start
        if len(rows) != count:
            raise AssertionError(f"limit read {len(rows)} rows back, expected {count}")
        return took


class _Peer:
    """eventsourcing's recorder in its scratch schema: the same slices."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.recorder: Any = None
        self._scope: Any = None

    async def __aenter__(self) -> _Peer:
        pg_dsn_reachable(self.ctx.pg_dsn)
        self._scope = _peers.postgres_peer(self.ctx.pg_dsn, PEER_SCHEMA)
        self.recorder = self._scope.__enter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._scope is not None:
            self._scope.__exit__(None, None, None)

    def records(self, session: str, count: int) -> list[Any]:
        return _peers.stored_events(session, count)

    async def single(self, events: list[Any]) -> float:
        insert = self.recorder.insert_events
        start = time.perf_counter()
        for event in events:
            insert([event])
        return time.perf_counter() - start

    async def batch(self, groups: list[list[Any]]) -> float:
        start = time.perf_counter()
        for group in groups:
            self.recorder.insert_events(group)
        return time.perf_counter() - start

    async def read(self, session: str, count: int) -> float:
        start = time.perf_counter()
        read = _peers.decode_all(self.recorder.select_events(session))
        took = time.perf_counter() - start
        if read != count:
            raise AssertionError(f"peer read {read} events back, expected {count}")
        return took


async def postgres(ctx: Context) -> list[Row]:
    """Single appends, batch-100 appends and a full read on PostgreSQL.

    The limit column is :class:`_Limit`: the same rows through bare asyncpg.
    Ours, the peer and the limit take turns slice by slice (:data:`SINGLE_SLICE` appends,
    :data:`BATCH_SLICE` batches, one read, :data:`READS` times), ``repeats`` rounds of the whole
    work; each side's rate is the median of its slices' rates. On a shared
    machine a slice is short enough that a burst of load usually lands on one
    slice of each side, not on a whole round of one side.
    """
    sizes = ctx.sizes
    batch_n = sizes.pg_batches * 100
    rows = [
        Row("postgres append, 1 ev/call", "ev/s", goal=Goal("min_ratio", 1.2, ">= 1.2x es-PG")),
        Row("postgres append, 100 ev/batch", "ev/s", goal=Goal("min_ratio", 1.5, ">= 1.5x es-PG")),
        Row(
            f"postgres read {batch_n:,} events",
            "ev/s",
            goal=Goal("min_ratio", 1.5, ">= 1.5x es-PG"),
        ),
    ]
    probe = rows[0]
    rates: dict[tuple[str, str], list[float]] = {}
    async with AsyncExitStack() as stack:
        sides: dict[str, Any] = {}
        for who, cls in (("ours", _Ours), ("peer", _Peer), ("limit", _Limit)):
            opened = await side(probe, who, functools.partial(stack.enter_async_context, cls(ctx)))
            if opened is not None:
                sides[who] = opened

        async def turns(op: str, work: dict[str, list[Any]], count: int) -> None:
            """One slice of ``op`` per side, in turns; a side that fails drops out."""
            for who in list(sides):
                if who not in work:
                    continue
                fn = getattr(sides[who], op)
                took = await side(probe, who, functools.partial(fn, *work[who]))
                if took is None:
                    sides.pop(who, None)
                else:
                    rates.setdefault((who, op), []).append(count / took)

        for i in range(sizes.repeats):
            singles = {who: s.records(f"one-{i}", sizes.pg_single) for who, s in sides.items()}
            for k in range(0, sizes.pg_single, SINGLE_SLICE):
                work = {who: [r[k : k + SINGLE_SLICE]] for who, r in singles.items()}
                await turns("single", work, len(next(iter(work.values()))[0]) if work else 0)
            groups = {
                who: list(chunks(s.records(f"many-{i}", batch_n), 100)) for who, s in sides.items()
            }
            for k in range(0, sizes.pg_batches, BATCH_SLICE):
                work = {who: [g[k : k + BATCH_SLICE]] for who, g in groups.items()}
                count = sum(len(g) for g in next(iter(work.values()))[0]) if work else 0
                await turns("batch", work, count)
            for _ in range(READS):
                await turns("read", {who: [f"many-{i}", batch_n] for who in sides}, batch_n)
    for row, op in zip(rows, ("single", "batch", "read"), strict=True):
        row.baseline_name = "eventsourcing PG recorder"
        slices = {who: rates.get((who, op), []) for who in ("ours", "peer", "limit")}
        row.ours, row.baseline, row.limit = (
            median(slices[who]) if slices[who] else None for who in ("ours", "peer", "limit")
        )
        row.detail["slice_rates"] = slices
        row.status = probe.status
    return rows


WORKLOADS = (postgres,)
