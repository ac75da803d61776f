"""Cross-process wake-ups for :mod:`eventstore.postgres`: one LISTEN connection per store.

Writers ``NOTIFY`` a compact position range inside their append's transaction,
so it is delivered only if and when that transaction commits. A notification is
a wake-up, never data: subscribers read the rows from the store. When the
listening connection drops, the listener reconnects and re-announces the heads
of the branches written meanwhile, since notifications sent while nobody
listened are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import asyncpg
import msgspec

from .._errors import StorageError, StoreClosed
from .._records import Position

__all__ = ("Listener", "Watch", "encode_notice")

logger = logging.getLogger("eventstore.postgres")

#: ``[instance_id, session_id, branch_id, first, last]``.
_Notice = tuple[str, str, str, int, int]
_decode_notice = msgspec.json.Decoder(_Notice).decode
_encoder = msgspec.json.Encoder()

#: How often an idle listening connection proves it is alive.
KEEPALIVE_SECONDS = 5.0
#: Re-announce branches written this long before the last connection came up,
#: to cover transactions that started before it and committed while down.
RESYNC_MARGIN = timedelta(seconds=10)

_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def encode_notice(instance_id: str, session_id: str, branch_id: str, first: int, last: int) -> str:
    """The NOTIFY payload announcing sequences ``first..last`` of a branch."""
    return _encoder.encode((instance_id, session_id, branch_id, first, last)).decode()


class Listener:
    """Owns the LISTEN connection and fans positions out to every :meth:`watch` iterator."""

    def __init__(
        self,
        connect: Callable[[], Any],
        channel: str,
        instance_id: str,
        recent_heads_sql: str,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._instance_id = instance_id
        self._recent_heads_sql = recent_heads_sql
        # Weak, so a Watch dropped without being closed stops collecting positions.
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._since: datetime | None = None

    def watch(self, ready: Callable[[], Awaitable[None]]) -> Watch:
        """A new :class:`Watch`, receiving from now on; ``ready`` opens the store."""
        watch = Watch(self, ready)
        self._watches.add(watch)
        return watch

    async def close(self) -> None:
        """Stop listening and end every :meth:`watch` iterator."""
        for watch in list(self._watches):
            watch._queue.put_nowait(None)
        if self._ready is not None and not self._ready.done():
            # Whoever waits for the first connection must not wait forever.
            self._ready.set_exception(StoreClosed())
            self._ready.exception()  # retrieved here; waiters re-raise it
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def start(self) -> None:
        """Listen, if not yet; returns once notifications are being received.

        :raises StorageError: if the first listening connection cannot be made.
        """
        if self._ready is None or (self._ready.done() and self._ready.exception() is not None):
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(self._ready), name="eventstore-listen")
        await asyncio.shield(self._ready)

    def _publish(self, position: Position) -> None:
        for watch in self._watches:
            watch._queue.put_nowait(position)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            instance_id, session_id, branch_id, first, last = _decode_notice(payload)
        except msgspec.DecodeError:
            logger.warning("ignoring a malformed notification: %.200r", payload)
            return
        if instance_id == self._instance_id:
            return
        for sequence in range(first, last + 1):
            self._publish(Position(session_id, branch_id, sequence))

    async def _run(self, ready: asyncio.Future[None]) -> None:
        delay = 0.1
        while True:
            try:
                conn = await self._connect()
            except _CONNECTION_ERRORS as exc:
                if not ready.done():
                    ready.set_exception(StorageError(f"cannot listen: {exc}"))
                    return
                logger.warning("listen connection failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await self._listen(conn, ready)
                delay = 0.1
            except _CONNECTION_ERRORS as exc:
                if not ready.done():
                    ready.set_exception(StorageError(f"cannot listen: {exc}"))
                    return
                logger.warning("listen connection lost (%s); reconnecting", exc)
            except Exception:
                # Live delivery must outlive a surprise; the readers' gap logic
                # re-reads whatever passes while we reconnect.
                logger.exception("listener failed; reconnecting in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                conn.terminate()

    async def _listen(self, conn: Any, ready: asyncio.Future[None]) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(self._channel, self._on_notify)
        since, self._since = self._since, await conn.fetchval("SELECT now()")
        if since is not None:
            # Notifications sent while nobody listened are lost: announce the
            # heads of whatever was written meanwhile; readers fill the gaps.
            for row in await conn.fetch(self._recent_heads_sql, since - RESYNC_MARGIN):
                self._publish(Position(row[0], row[1], row[2]))
        if not ready.done():
            ready.set_result(None)
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await conn.execute("SELECT 1")


class Watch:
    """Positions other store instances commit; an async iterator and context manager.

    It collects positions from its creation, once the store listens: ``async with
    store.watch() as positions`` returns when listening has begun, so every
    position committed after that is yielded. Iterating starts listening too.
    """

    def __init__(self, listener: Listener, ready: Callable[[], Awaitable[None]]) -> None:
        self._listener = listener
        self._ready = ready
        self._queue: asyncio.Queue[Position | None] = asyncio.Queue()
        self._started = False
        self._done = False

    async def _start(self) -> None:
        if not self._started:
            await self._ready()
            await self._listener.start()
            self._started = True

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Position:
        if self._done:
            raise StopAsyncIteration
        await self._start()
        position = await self._queue.get()
        if position is None:
            self.close()
            raise StopAsyncIteration
        return position

    async def __aenter__(self) -> Watch:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; iteration ends. Idempotent."""
        self._done = True
        self._listener._watches.discard(self)

    async def aclose(self) -> None:
        """Alias of :meth:`close`, for ``contextlib.aclosing``."""
        self.close()
