"""The PostgreSQL store's connection pool, tested directly with stand-in connections.

Only the last test needs the server: a store whose pool is exhausted raises
:class:`StorageError` after its acquire timeout instead of waiting for ever.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from eventstore import StorageError
from eventstore.postgres import PostgresEventStore, _pool
from eventstore.postgres._pool import ConnectionPool
from tests.conftest import PG_DSN, _postgres_factory


class FakeConn:
    """What the pool uses of an asyncpg connection."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False
        self.terminated = False
        self.in_transaction = False

    def is_closed(self) -> bool:
        return self.closed or self.terminated

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    def terminate(self) -> None:
        self.terminated = True

    async def close(self) -> None:
        self.closed = True

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return [(sql, args)]

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return (sql, args)


class Connector:
    def __init__(self, fail_at: int | None = None) -> None:
        self.made: list[FakeConn] = []
        self.fail_at = fail_at

    async def __call__(self) -> FakeConn:
        if self.fail_at is not None and len(self.made) == self.fail_at:
            self.fail_at = None
            raise OSError("connection refused")
        conn = FakeConn(len(self.made))
        self.made.append(conn)
        return conn


@pytest.mark.parametrize(
    ("min_size", "max_size", "timeout"),
    [(-1, 1, None), (2, 1, None), (0, 0, None), (0, 1, 0), (0, 1, -1.0)],
)
def test_bad_sizes_and_timeouts_are_refused(
    min_size: int, max_size: int, timeout: float | None
) -> None:
    with pytest.raises(ValueError, match=r"min_size|acquire_timeout"):
        ConnectionPool(Connector(), min_size=min_size, max_size=max_size, acquire_timeout=timeout)


async def test_open_makes_min_size_and_acquire_reuses_the_warmest() -> None:
    connect = Connector()
    pool = ConnectionPool(connect, min_size=2, max_size=3)
    await pool.open()
    assert len(connect.made) == 2
    async with pool.acquire() as first:
        pass
    async with pool.acquire() as again:
        assert again is first  # most recently used first
    async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
        assert len({a, b, c}) == 3
    assert len(connect.made) == 3
    await pool.close()
    assert all(conn.closed for conn in connect.made)


async def test_a_failed_open_closes_what_it_made_and_can_be_retried() -> None:
    connect = Connector(fail_at=1)
    pool = ConnectionPool(connect, min_size=2, max_size=2)
    with pytest.raises(OSError, match="refused"):
        await pool.open()
    assert all(conn.is_closed() for conn in connect.made)
    await pool.open()
    assert await pool.fetch("SELECT 1") == [("SELECT 1", ())]
    await pool.close()


async def test_acquire_waits_for_a_free_slot_then_times_out_typed() -> None:
    pool = ConnectionPool(Connector(), min_size=0, max_size=1, acquire_timeout=0.05)
    async with pool.acquire():
        with pytest.raises(StorageError, match=r"no connection came free within 0\.05s"):
            async with pool.acquire():
                pass
    # The timed-out waiter left no slot behind: the pool still serves.
    assert await pool.fetchrow("SELECT 2", 1) == ("SELECT 2", (1,))
    await pool.close()


async def test_a_released_slot_wakes_a_waiter() -> None:
    pool = ConnectionPool(Connector(), min_size=0, max_size=1, acquire_timeout=5)
    held = pool.acquire()
    conn = await held.__aenter__()
    waiter = asyncio.create_task(pool.fetch("SELECT 3"))
    await asyncio.sleep(0)
    assert not waiter.done()
    await held.__aexit__(None, None, None)
    assert await waiter == [("SELECT 3", ())]
    async with pool.acquire() as again:
        assert again is conn
    await pool.close()


async def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    pool = ConnectionPool(Connector(), min_size=0, max_size=1)
    async with pool.acquire():
        waiter = asyncio.create_task(pool.fetch("SELECT 4"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with asyncio.timeout(1), pool.acquire():
        pass
    await pool.close()


async def test_untrustworthy_connections_are_dropped_clean_ones_kept() -> None:
    connect = Connector()
    pool = ConnectionPool(connect, min_size=0, max_size=2)
    # A server-side error outside a transaction leaves the connection clean.
    with pytest.raises(asyncpg.PostgresError):
        async with pool.acquire() as kept:
            raise asyncpg.PostgresError("syntax error")
    assert not kept.terminated
    # Any other failure, or a transaction left open, may not.
    with pytest.raises(RuntimeError):
        async with pool.acquire() as broken:
            assert broken is kept
            raise RuntimeError("a bug mid-query")
    assert broken.terminated
    async with pool.acquire() as open_tx:
        open_tx.in_transaction = True
    assert open_tx.terminated
    # A connection that died while idle is skipped, never handed out.
    async with pool.acquire() as fine:
        pass
    fine.closed = True
    async with pool.acquire() as fresh:
        assert fresh is not fine
    assert len(connect.made) == 4
    await pool.close()


async def test_close_waits_for_work_in_flight_then_refuses() -> None:
    pool = ConnectionPool(Connector(), min_size=1, max_size=2)
    await pool.open()
    release = asyncio.Event()

    async def work() -> None:
        async with pool.acquire():
            await release.wait()

    task = asyncio.create_task(work())
    await asyncio.sleep(0)
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    release.set()
    await task
    await closing
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        async with pool.acquire():
            pass


async def test_close_terminates_what_outlives_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pool, "CLOSE_GRACE", 0.01)
    pool = ConnectionPool(Connector(), min_size=0, max_size=1)
    lease = pool.acquire()
    stuck = await lease.__aenter__()
    await pool.close()
    assert stuck.terminated
    await lease.__aexit__(None, None, None)


async def test_an_exhausted_store_pool_raises_storage_error(request: pytest.FixtureRequest) -> None:
    async for factory in _postgres_factory(request):
        schema = factory().schema  # type: ignore[attr-defined]
        store = PostgresEventStore(
            PG_DSN, schema=schema, min_size=1, max_size=1, acquire_timeout=0.1
        )
        async with store:
            async with store._pool.acquire():
                with pytest.raises(StorageError, match="no connection came free"):
                    await store.head("s1")
            assert await store.head("s1") == 0
