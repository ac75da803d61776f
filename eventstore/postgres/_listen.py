"""Other processes' commits for :mod:`eventstore.postgres`: one LISTEN connection per store.

Every commit notifies ``<schema>.events`` with its committed range, sent inside
the writing transaction so it is delivered only if and when that commits:
``[instance_id, session_id, branch_id, first, last, position]`` (sequences
``first..last``, the first at ``position``, the rest following it). The
listener reads each range with one query on its own connection and hands the
records to the store's listeners; its own store's notices are skipped (the
store delivered those when they committed).

Memory stays bounded: at most :data:`MAX_QUEUED` notices wait. A flood beyond
that collapses them into one span, "re-read from position p to q", read back in
pages in position order. After a lost connection the listener reconnects and
re-reads from the horizon it last saw, since notices sent while nobody listened
are gone. Both recoveries may deliver a record twice (at least once, never
lost); a listener that keeps the last sequence per branch drops the repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import msgspec

from .._errors import EventStoreError, StorageError
from .._json import encode
from .._records import EventRecord
from .._validate import MAX_SEQUENCE
from ._rows import record, records
from ._schema import Statements

__all__ = ("MAX_QUEUED", "Listener", "notice_prefix")

logger = logging.getLogger("eventstore.postgres")

#: ``[instance_id, session_id, branch_id, first, last, position]``.
_Notice = tuple[str, str, str, int, int, int]
_decode_notice = msgspec.json.Decoder(_Notice).decode

#: How often an idle listening connection proves it is alive and notes the horizon.
KEEPALIVE_SECONDS = 5.0
#: Notices waiting to be read before a flood collapses into one re-read span.
MAX_QUEUED = 1024
#: Rows per query when re-reading a span.
SPAN_PAGE = 1000

_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def notice_prefix(instance_id: str, session_id: str, branch_id: str) -> str:
    """The start of a NOTIFY payload; SQL appends ``,first,last,position]``."""
    return encode((instance_id, session_id, branch_id)).decode()[:-1]


class Listener:
    """Owns the LISTEN connection; reads every other instance's committed range once.

    :param connect: makes a new connection.
    :param ready: awaited before connecting (opens the store).
    :param deliver: called on the event loop with each committed range's records.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        ready: Callable[[], Awaitable[None]],
        deliver: Callable[[Sequence[EventRecord]], None],
        sql: Statements,
        channel: str,
        instance_id: str,
    ) -> None:
        self._connect = connect
        self._ready = ready
        self._deliver = deliver
        self._sql = sql
        self._channel = channel
        self._instance_id = instance_id
        self._queue: deque[_Notice] = deque()
        #: ``(p, q)``: re-read every committed row with ``p <= position <= q``.
        self._span: tuple[int, int] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The horizon last seen while listening: where a reconnect re-reads from.
        self._resume: int | None = None
        self._listening = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the listening task runs (it may still be connecting)."""
        return self._task is not None

    async def listening(self) -> None:
        """Return once notifications are being received.

        :raises StorageError: if listening stopped, or never began, first.
        """
        while not self._listening.is_set():
            task = self._task
            if task is None or task.done():
                raise StorageError("listening ended before it began")
            waiter = asyncio.ensure_future(self._listening.wait())
            try:
                await asyncio.wait((waiter, task), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    def start(self) -> None:
        """Start listening in the background, if not yet; needs a running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="eventstore-listen"
            )

    def halt(self) -> None:
        """Stop listening (the task ends soon); forget what waits, and where to resume."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            self._stopping = task
        self._queue.clear()
        self._span = None
        self._resume = None
        self._listening.clear()

    async def stop(self) -> None:
        """:meth:`halt`, and wait until the connection is closed."""
        self.halt()
        task, self._stopping = self._stopping, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            notice = _decode_notice(payload)
        except msgspec.DecodeError:
            logger.warning("ignoring a malformed notification: %.200r", payload)
            return
        if notice[0] == self._instance_id:
            return
        if len(self._queue) >= MAX_QUEUED:
            # A flood: one span covers every waiting range, read back in pages.
            self._queue.append(notice)
            low = min(n[5] for n in self._queue)
            high = max(n[5] + n[4] - n[3] for n in self._queue)
            if self._span is not None:
                low, high = min(low, self._span[0]), max(high, self._span[1])
            self._span = (low, high)
            self._queue.clear()
        else:
            self._queue.append(notice)
        self._wake.set()

    def _on_lost(self, _conn: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        try:
            await self._ready()
        except EventStoreError as exc:
            logger.warning("not listening: %s", exc)
            return
        delay = 0.1
        while True:
            try:
                conn = await self._connect()
            except _CONNECTION_ERRORS as exc:
                logger.warning("listen connection failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await self._listen(conn)
            except _CONNECTION_ERRORS as exc:
                logger.warning("listen connection lost (%s); reconnecting", exc)
                delay = 0.1
            except Exception:
                # Live delivery must outlive a surprise; the reconnect re-reads.
                logger.exception("listener failed; reconnecting in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._listening.clear()
                conn.terminate()

    async def _listen(self, conn: Any) -> None:
        conn.add_termination_listener(self._on_lost)
        await conn.add_listener(self._channel, self._on_notify)
        horizon = await conn.fetchval(self._sql.horizon)
        if self._resume is not None:
            # Notices sent while nobody listened are gone: every commit since
            # the horizon last seen is re-read.
            self._widen(self._resume, MAX_SEQUENCE)
        self._resume, noted = horizon, time.monotonic()
        self._listening.set()
        while not conn.is_closed():
            if not self._queue and self._span is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        await self._wake.wait()
            if time.monotonic() - noted >= KEEPALIVE_SECONDS:
                self._resume, noted = await conn.fetchval(self._sql.horizon), time.monotonic()
            await self._drain(conn)

    def _widen(self, low: int, high: int) -> None:
        if self._span is not None:
            low, high = min(low, self._span[0]), max(high, self._span[1])
        self._span = (low, high)

    async def _drain(self, conn: Any) -> None:
        while self._span is not None:
            span = low, high = self._span
            rows = await conn.fetch(self._sql.span, low, high, SPAN_PAGE)
            rest = None if len(rows) < SPAN_PAGE else (rows[-1]["position"] + 1, high)
            if self._span != span:
                # A flood folded more in while we read: keep all of it.
                wider = self._span
                rest = wider if rest is None else (min(rest[0], wider[0]), max(high, wider[1]))
            self._span = rest
            if rows:
                self._hand_over(records(rows))
        while self._queue and self._span is None:
            notice = self._queue[0]
            _, session_id, branch_id, first, last, _ = notice
            rows = await conn.fetch(self._sql.range, session_id, branch_id, first, last)
            # Popped only once read: a lost connection leaves it for the next one.
            # A flood meanwhile folded it into the span, which reads it again.
            if self._queue and self._queue[0] is notice:
                self._queue.popleft()
            self._hand_over([record(session_id, row) for row in rows])

    def _hand_over(self, batch: list[EventRecord]) -> None:
        try:
            self._deliver(batch)
        except Exception:
            logger.exception("a store listener failed on %d records", len(batch))
