"""The PostgreSQL store's cheap paths (issue 16): what a single append sends, and row decoding.

A single-event append runs the ``*_one`` statements, which take one value per
column instead of arrays to unnest; they must store exactly what the array
statements store. An events row is read by position, in the order of
``EVENT_COLUMNS``, which every events statement must select. A pooled
connection taken while a slot is free arms no timer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from eventstore import EventRecord, StorageError
from eventstore._json import encode
from eventstore.postgres import PostgresEventStore, _pool
from eventstore.postgres._listen import notice_prefix
from eventstore.postgres._pool import ConnectionPool
from eventstore.postgres._rows import EVENT_COLUMNS
from tests.conftest import PG_DSN


@contextlib.asynccontextmanager
async def _store(schema: str) -> AsyncIterator[PostgresEventStore]:
    async with PostgresEventStore(PG_DSN, schema=schema, min_size=1, max_size=1) as store:
        yield store


class _Recording:
    """A pooled connection that notes every ``fetchrow``; the rest goes to the real one."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self.conn.fetchrow(sql, *args)


@contextlib.contextmanager
def _statements_sent(store: PostgresEventStore) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every ``fetchrow`` the store's (single) pooled connection runs meanwhile."""
    idle = store._pool._idle
    recording = _Recording(idle[0])
    idle[0] = recording
    try:
        yield recording.sent
    finally:
        idle[:] = [c.conn if isinstance(c, _Recording) else c for c in idle]


async def test_a_single_append_is_one_statement_of_scalars(schema: str) -> None:
    async with _store(schema) as store:
        sql = store._sql
        await store.head("s")  # opens the store: its connection is pooled now
        with _statements_sent(store) as sent:
            await store.append(EventRecord.new("s", "main", 1, "k", {"n": 1}))
            await store.append(EventRecord.new("s", "main", 2, "k", {"n": 2}))
            await store.append_next([EventRecord.new("s", "main", 1, "k", {"n": 3})])
            await store.create_branch("s", "b")
            await store.append(EventRecord.new("s", "b", 4, "k", {"n": 4}))
            await store.append_next([EventRecord.new("s", "b", 1, "k", {"n": 5})])
            await store.append_batch(
                [EventRecord.new("s", "main", n, "k", {"n": n}) for n in (4, 5)]
            )
        appends = {
            sql.append_new_one,
            sql.append_next_one,
            sql.append_at_head_one,
            sql.append_new_at_head_one,
            sql.append_new,
            sql.append_next,
            sql.append_at_head,
            sql.append_new_at_head,
        }
        # create_branch's own statements left out: one statement per append.
        sent = [(statement, args) for statement, args in sent if statement in appends]
        assert [statement for statement, _ in sent] == [
            sql.append_new_one,
            sql.append_next_one,
            sql.append_new_at_head_one,
            sql.append_next_one,
            sql.append_at_head_one,
            sql.append_next,  # a batch of two: the array statement
        ]
        for _, args in sent[:-1]:
            assert not any(isinstance(arg, list) for arg in args)
        assert [e.data["n"] for e in await store.read("s")] == [1, 2, 3, 4, 5]
        assert [e.data["n"] for e in await store.read("s", "b")] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("sequence", [1, 2])
async def test_the_one_value_statements_store_what_the_array_statements_store(
    schema: str, admin: Any, sequence: int
) -> None:
    async with _store(schema) as store:
        sql = store._sql
        for session in ("one", "array"):
            if sequence > 1:
                await store.append(EventRecord.new(session, "main", 1, "k", None))
        records = {
            session: EventRecord.new(
                session, "main", sequence, "kind", {"x": "\u0000", "big": 1e20}, metadata={"m": 1}
            )
            for session in ("one", "array")
        }
        one = await store.append(records["one"])
        async with store._pool.acquire() as conn:
            # The array statement, as a batch of one took it before the *_one ones.
            e = records["array"]
            statement = sql.append_new if sequence == 1 else sql.append_next
            row = await conn.fetchrow(
                statement,
                e.session_id,
                e.branch_id,
                e.sequence,
                [e.event_id],
                [e.kind],
                [encode(e.data).decode()],
                [encode(e.metadata).decode()],
                [e.recorded_at],
                notice_prefix("test", e.session_id, e.branch_id),
            )
        assert (row["first"], one.sequence) == (sequence, sequence)
        columns = "branch_id, sequence, kind, data::text, metadata::text, recorded_at"
        stored = {
            session: await admin.fetchrow(
                f"SELECT {columns}, position - (position >> 20 << 20) AS ordinal"
                f' FROM "{schema}".events WHERE session_id = $1 AND sequence = $2',
                session,
                sequence,
            )
            for session in ("one", "array")
        }
        one_row, array_row = (dict(stored[s]) for s in ("one", "array"))
        assert one_row.pop("recorded_at") == records["one"].recorded_at
        assert array_row.pop("recorded_at") == records["array"].recorded_at
        assert one_row == array_row
        heads = await admin.fetch(
            f'SELECT session_id, head FROM "{schema}".branches ORDER BY session_id'
        )
        assert [tuple(r) for r in heads] == [("array", sequence), ("one", sequence)]
        activity = await admin.fetch(
            f'SELECT session_id, last_activity FROM "{schema}".sessions ORDER BY session_id'
        )
        for row in activity:
            assert row["last_activity"] >= records[row["session_id"]].recorded_at
        assert [row["session_id"] for row in activity] == ["array", "one"]
        for session in ("one", "array"):
            [read] = await store.read(session, from_sequence=sequence)
            assert read.data == {"x": "\u0000", "big": 1e20} and read.metadata == {"m": 1}


async def test_every_events_statement_selects_event_columns_in_order(schema: str) -> None:
    async with _store(schema) as store:
        sql = store._sql
        async with store._pool.acquire() as conn:
            for statement in (sql.read, sql.range, sql.by_event_ids, sql.own_events):
                prepared = await conn.prepare(statement)
                assert tuple(a.name for a in prepared.get_attributes()) == EVENT_COLUMNS


async def test_a_free_slot_is_taken_without_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    class Conn:
        def is_closed(self) -> bool:
            return False

        def is_in_transaction(self) -> bool:
            return False

        def terminate(self) -> None:
            pass

        async def close(self) -> None:
            pass

    async def connect() -> Conn:
        return Conn()

    timers: list[float | None] = []
    real_timeout = _pool.asyncio.timeout

    def timeout(delay: float | None) -> Any:
        timers.append(delay)
        return real_timeout(delay)

    monkeypatch.setattr(_pool.asyncio, "timeout", timeout)
    pool = ConnectionPool(connect, min_size=1, max_size=1, acquire_timeout=0.05)
    await pool.open()
    for _ in range(3):
        async with pool.acquire():
            pass
    assert timers == []
    # A full pool still waits under the timeout, and gives up after it.
    async with pool.acquire():
        with pytest.raises(StorageError, match="no connection came free"):
            async with pool.acquire():
                pass
    assert timers == [0.05]
    await pool.close()
