"""A small connection pool for :mod:`eventstore.postgres`.

asyncpg's ``Pool`` resets, re-arms timers and wraps a proxy on every
acquire/release: about 50 µs, a sixth of a durable single-event append. The
store keeps no session state on its connections, so this pool only needs to
bound the count, reuse idle connections (most recently used first, the warmest
statement cache) and drop any connection it can no longer trust.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import asyncpg

from .._errors import StorageError

__all__ = ("CLOSE_GRACE", "ConnectionPool")

#: Seconds :meth:`ConnectionPool.close` waits for operations in flight.
CLOSE_GRACE = 10.0


class ConnectionPool:
    """At most ``max_size`` connections made by ``connect``; ``min_size`` opened up front.

    :param acquire_timeout: seconds an operation waits for a free connection
        before :meth:`acquire` raises :class:`~eventstore.StorageError`; ``None``
        waits for ever.
    :raises ValueError: for sizes outside ``0 <= min_size <= max_size``,
        ``max_size >= 1``, or a timeout that is not positive.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        *,
        min_size: int,
        max_size: int,
        acquire_timeout: float | None = None,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(
                f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}"
            )
        if acquire_timeout is not None and not acquire_timeout > 0:
            raise ValueError(f"acquire_timeout must be positive or None, got {acquire_timeout}")
        self._connect = connect
        self._min_size = min_size
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[Any] = []
        self._busy: set[Any] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False

    async def open(self) -> None:
        """Open ``min_size`` connections.

        :raises OSError, asyncpg.PostgresError: if the server cannot be reached.
        """
        self._closed = False  # a failed open may be retried
        results = await asyncio.gather(
            *(self._connect() for _ in range(self._min_size)), return_exceptions=True
        )
        fresh = [r for r in results if not isinstance(r, BaseException)]
        self._idle.extend(fresh)
        for result in results:
            if isinstance(result, BaseException):
                await self.close()
                raise result

    def acquire(self) -> _Lease:
        """``async with pool.acquire() as conn``: a connection for one operation.

        :raises StorageError: (on entering) if no connection came free within
            the acquire timeout.
        :raises asyncpg.InterfaceError: (likewise) once the pool is closed.
        :raises OSError, asyncpg.PostgresError: (likewise) if a new connection fails.
        """
        return _Lease(self)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Run one query on a pooled connection; its rows.

        :raises: as :meth:`acquire`, and whatever the query raises.
        """
        async with self.acquire() as conn:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        """Run one query on a pooled connection; its first row or None.

        :raises: as :meth:`acquire`, and whatever the query raises.
        """
        async with self.acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def close(self) -> None:
        """Let operations in flight finish (up to :data:`CLOSE_GRACE` s), then close all."""
        self._closed = True
        try:
            await asyncio.wait_for(self._drained.wait(), CLOSE_GRACE)
        except TimeoutError:
            for conn in self._busy:
                conn.terminate()
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError, TimeoutError):
                conn.terminate()

    async def _take(self) -> Any:
        if self._closed:
            raise asyncpg.InterfaceError("the connection pool is closed")
        if not self._slots.locked():
            # A free slot is taken at once: no timer to arm and cancel (a few µs).
            await self._slots.acquire()
        else:
            await self._wait_for_slot()
        try:
            while self._idle:
                conn = self._idle.pop()
                if not conn.is_closed():
                    break
            else:
                conn = await self._connect()
        except BaseException:
            self._slots.release()
            raise
        self._busy.add(conn)
        self._drained.clear()
        return conn

    async def _wait_for_slot(self) -> None:
        """Wait for a slot up to the acquire timeout.

        :raises StorageError: if none came free in time.
        """
        try:
            async with asyncio.timeout(self._acquire_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise StorageError(
                f"no connection came free within {self._acquire_timeout}s "
                f"(all {self._max_size} busy): raise max_size or acquire_timeout"
            ) from None

    def _give_back(self, conn: Any, exc: BaseException | None) -> None:
        self._busy.discard(conn)
        self._slots.release()
        if not self._busy:
            self._drained.set()
        if conn.is_closed():
            return
        if self._closed:
            conn.terminate()
            return
        # A server-side error outside a transaction leaves the connection clean;
        # anything else (cancellation mid-query, a lost socket, a bug) may not.
        if (exc is None or isinstance(exc, asyncpg.PostgresError)) and (
            not conn.is_in_transaction()
        ):
            self._idle.append(conn)
        else:
            conn.terminate()


class _Lease:
    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: Any = None

    async def __aenter__(self) -> Any:
        self._conn = await self._pool._take()
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool._give_back(self._conn, exc)
