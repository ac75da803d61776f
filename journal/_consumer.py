"""Durable consumers: every feed record, at least once, under a lease, with retries.

A :class:`Consumer` reads the store's global feed after its checkpoint
(``read_feed``), hands each matching record to its handler, and keeps its
state in the store (:meth:`~eventstore.EventStore.consumer_state`). It wakes
on the store's commits (a store listener; a read-only file store follows the
writer process) and otherwise sleeps.

Checkpoints are written in batches: :data:`CHECKPOINT_INTERVAL` seconds after
the first unsaved acknowledgment (or once :data:`CHECKPOINT_EVERY` records are
unsaved), one write at a time, while the handling goes on; and when the
consumer stops. So after a crash it redelivers at most the records
acknowledged since the last write that completed: about
``CHECKPOINT_INTERVAL`` seconds plus two writes' time worth of them, plus the
one in flight. Dead letters are stored before the checkpoint passes
them (a crash in between may store one again, which replaces it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Self

import msgspec

from eventstore import (
    ConsumerState,
    DeadLetter,
    EventRecord,
    EventStore,
    check_identifier,
    new_ulid,
)
from eventstore._records import utc_now
from eventstore._validate import check_feed_args

from ._typed import JournalError

__all__ = ("CHECKPOINT_EVERY", "CHECKPOINT_INTERVAL", "Consumer", "ConsumerBusy")

#: Acknowledged records after which the checkpoint is written.
CHECKPOINT_EVERY = 10_000
#: Seconds after the first unsaved acknowledgment by which the checkpoint is written.
CHECKPOINT_INTERVAL = 0.2
#: Records per ``read_feed``.
PAGE_SIZE = 1000
#: Seconds between tries of a busy lease (``wait=True``) and between idle polls.
POLL_INTERVAL = 0.2

Handler = Callable[[EventRecord], Awaitable[None]]


def _quiet(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _Stopped(Exception):
    """The consumer was stopped during a backoff: the record stays unacknowledged."""


class ConsumerBusy(JournalError):
    """Another instance holds the consumer's lease (raised with ``wait=False``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"consumer {name!r} is running elsewhere (its lease is held)")


class Consumer:
    """Delivers the feed to ``handler``, at least once, in position order.

    Made by :meth:`journal.EventJournal.consumer`; see it for the parameters.
    ``async with consumer:`` runs it in the background; leaving the block lets
    the handler in flight finish, writes the checkpoint and releases the lease.

    :param sleep: awaited for each backoff delay (tests pass a fake clock's).
    :param jitter: returns a float in ``[0, 1)``; a delay is scaled by
        ``0.5 + jitter() / 2``.
    """

    def __init__(
        self,
        store: EventStore,
        name: str,
        handler: Handler,
        *,
        kinds: Iterable[str] | None = None,
        session_ids: Iterable[str] | None = None,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        lease_seconds: float = 30.0,
        wait: bool = True,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        check_identifier(name, "name")
        _, _, self._kinds, self._sessions = check_feed_args(0, None, kinds, session_ids)
        if type(max_attempts) is not int or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        for field, value in (
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("lease_seconds", lease_seconds),
        ):
            if not isinstance(value, int | float) or value < 0 or value != value:
                raise ValueError(f"{field} must be a number >= 0, got {value!r}")
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self.name = name
        self._store = store
        self._handler = handler
        self._max_attempts = max_attempts
        self._backoff = float(backoff)
        self._max_backoff = float(max_backoff)
        self._lease_seconds = float(lease_seconds)
        self._wait = wait
        self._sleep = sleep
        self._jitter = jitter
        self._holder = new_ulid()
        self._state: ConsumerState | None = None
        self._position = 0
        #: The position last handed to a checkpoint write, and that write.
        self._requested = 0
        self._saving: asyncio.Task[None] | None = None
        self._unsaved_since: float | None = None
        self._unsaved = 0
        self._held = False
        self._renewed = 0.0
        #: Bumped by :meth:`reset`, so a page read before it is not acknowledged.
        self._generation = 0
        self._handling = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._handled = 0

    def __repr__(self) -> str:
        return f"<Consumer {self.name!r} position={self._position}>"

    @property
    def position(self) -> int:
        """The feed position up to which every record was handled (as last loaded or reached)."""
        return self._position

    # -- state -----------------------------------------------------------------

    async def _load(self) -> ConsumerState:
        if self._state is None:
            self._state = await self._store.consumer_state(self.name)
            self._position = self._requested = await self._state.position()
        return self._state

    async def _acquire(self, *, wait: bool) -> bool:
        """Take the lease; ``False`` if stopped while waiting for it."""
        state = await self._load()
        while not await state.acquire(self._holder, self._lease_seconds):
            if not wait:
                raise ConsumerBusy(self.name)
            if self._stopping.is_set():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), POLL_INTERVAL)
        self._held = True
        self._renewed = time.monotonic()
        # Another instance may have moved the checkpoint while we waited.
        self._position = self._requested = await state.position()
        return True

    async def _renew(self) -> None:
        """Renew the lease once a third of it has passed.

        :raises ConsumerBusy: if it lapsed and another instance took it.
        """
        if self._held and time.monotonic() - self._renewed >= self._lease_seconds / 3:
            assert self._state is not None
            if not await self._state.acquire(self._holder, self._lease_seconds):
                self._held = False
                raise ConsumerBusy(self.name)
            self._renewed = time.monotonic()

    async def _release(self) -> None:
        if self._held and self._state is not None:
            self._held = False
            await self._state.release(self._holder)

    async def _checkpoint(self, *, force: bool = False) -> None:
        """Write the checkpoint when due; one write at a time, overlapping the handling.

        :raises StorageError: if the last write failed.
        """
        saving = self._saving
        if saving is not None and (force or saving.done()):
            self._saving = None
            await saving
            saving = None
        if self._position == self._requested or self._state is None or saving is not None:
            return
        since = self._unsaved_since
        due = since is not None and time.monotonic() - since >= CHECKPOINT_INTERVAL
        if force or due or self._unsaved >= CHECKPOINT_EVERY:
            position = self._requested = self._position
            self._unsaved, self._unsaved_since = 0, None
            if force:
                await self._state.save_position(position)
            else:
                self._saving = asyncio.create_task(self._state.save_position(position))
            await self._renew()

    async def _settle_save(self) -> None:
        """Wait for the checkpoint write under way (before another writer of it)."""
        saving, self._saving = self._saving, None
        if saving is not None:
            await saving

    def _acknowledge(self, position: int) -> None:
        self._position = max(self._position, position)
        self._unsaved += 1
        if self._unsaved_since is None:
            self._unsaved_since = time.monotonic()

    # -- delivery --------------------------------------------------------------

    async def _deliver(self, record: EventRecord) -> DeadLetter | None:
        """Run the handler, retrying; the dead letter if it never succeeded.

        :raises _Stopped: if stopped during a backoff (not acknowledged).
        """
        first_failed = None
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._handler(record)
                return None
            except Exception as exc:
                now = utc_now()
                first_failed = first_failed or now
                if attempt >= self._max_attempts:
                    return DeadLetter(
                        self.name,
                        record.position,
                        record.session_id,
                        record.branch_id,
                        record.sequence,
                        record.event_id,
                        attempt,
                        type(exc).__qualname__,
                        str(exc),
                        first_failed,
                        now,
                    )
            await self._pause(self.delay(attempt))

    def delay(self, attempt: int) -> float:
        """The backoff after failed attempt ``attempt`` (1-based): exponential, capped, jittered."""
        base: float = min(self._max_backoff, self._backoff * 2.0 ** min(attempt - 1, 64))
        return base * (0.5 + self._jitter() / 2)

    async def _pause(self, seconds: float) -> None:
        if self._stopping.is_set():
            raise _Stopped
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()
        if self._stopping.is_set():
            raise _Stopped

    async def _handle(self, record: EventRecord) -> None:
        generation = self._generation
        letter = await self._deliver(record)
        if generation != self._generation:
            return
        if letter is not None:
            assert self._state is not None
            await self._state.add_dead_letter(letter)
        self._acknowledge(record.position)
        self._handled += 1

    async def _catch_up(self) -> int:
        """Handle every matching record up to the feed head as it was at the start.

        The next page is read while this one is handled (the reading overlaps
        the handling, as the store's I/O runs on its own thread).
        """
        head = await self._store.feed_head()
        handled = 0
        ahead: asyncio.Task[list[EventRecord]] | None = None
        try:
            while self._position < head and not self._stopping.is_set():
                generation = self._generation
                page = await (ahead or self._read_page(self._position))
                ahead = None
                if len(page) == PAGE_SIZE and page[-1].position < head:
                    ahead = asyncio.ensure_future(self._read_page(page[-1].position))
                # The whole page under the lock: retries and resets wait for it.
                async with self._handling:
                    count, whole = await self._handle_page(page, head, generation)
                handled += count
                if not whole:
                    break
                if len(page) < PAGE_SIZE:
                    # Nothing else matches up to ``head``: every record below it was
                    # visible when ``head`` was read (the feed never skips).
                    self._position = max(self._position, head)
                    self._unsaved_since = self._unsaved_since or time.monotonic()
        finally:
            if ahead is not None:
                # Not awaited (this may be a cancellation); its error is not news.
                ahead.add_done_callback(_quiet)
                ahead.cancel()
        return handled

    async def _read_page(self, after: int) -> list[EventRecord]:
        return await self._store.read_feed(
            after, PAGE_SIZE, kinds=self._kinds, session_ids=self._sessions
        )

    async def _handle_page(
        self, page: list[EventRecord], head: int, generation: int
    ) -> tuple[int, bool]:
        """Handle a page's records up to ``head``; how many, and whether all of them."""
        for count, record in enumerate(page):
            if record.position > head or self._stopping.is_set() or generation != self._generation:
                return count, False
            try:
                await self._handle(record)
            except _Stopped:
                return count, False
            await self._checkpoint()
        return len(page), True

    # -- running ---------------------------------------------------------------

    async def run_until_idle(self) -> int:
        """Process until caught up with the store's ``feed_head()``; how many records it handled.

        Inside ``async with consumer:`` it waits for the background run to get
        there; otherwise it takes the lease, processes, writes the checkpoint
        and releases the lease.

        :raises ConsumerBusy: with ``wait=False``, if another instance holds the lease.
        :raises StorageError: if the store fails.
        :raises StoreClosed: if the store was closed.
        """
        if self._task is not None:
            before, head = self._handled, await self._store.feed_head()
            while self._position < head and not self._task.done():
                self._idle.clear()
                self._wake.set()
                idle = asyncio.ensure_future(self._idle.wait())
                try:
                    await asyncio.wait({self._task, idle}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    idle.cancel()
            if self._task.done():
                self._task.result()
            return self._handled - before
        self._stopping.clear()
        await self._acquire(wait=self._wait)
        try:
            return await self._catch_up()
        finally:
            try:
                await self._checkpoint(force=True)
            finally:
                await self._release()

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"consumer {self.name!r} is already running")
        self._stopping.clear()
        if not self._wait:
            await self._acquire(wait=False)
        self._task = asyncio.create_task(self._run(), name=f"consumer {self.name}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Let the handler in flight finish, write the checkpoint, release the lease.

        :raises StorageError: if the run failed on the store (re-raised here).
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        await task

    async def _run(self) -> None:
        remove = self._store.add_listener(self)
        try:
            if not self._held and not await self._acquire(wait=True):
                return
            await self._store.listening()
            while not self._stopping.is_set():
                self._wake.clear()
                await self._catch_up()
                await self._checkpoint()
                self._idle.set()
                await self._renew()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_timeout())
        finally:
            remove()
            try:
                await self._checkpoint(force=True)
            finally:
                await self._release()

    def _idle_timeout(self) -> float:
        if self._unsaved_since is not None:
            # Not 0: a write under way delays the next one; do not spin meanwhile.
            return max(0.01, CHECKPOINT_INTERVAL - (time.monotonic() - self._unsaved_since))
        return min(POLL_INTERVAL * 5, self._lease_seconds / 3)

    def committed(self, records: Sequence[EventRecord]) -> None:
        """Store listener: a commit wakes the background run."""
        self._wake.set()

    # -- inspection and repair -------------------------------------------------

    async def lag(self) -> int:
        """How many matching feed records lie after :attr:`position` (O(lag) to count).

        :raises StorageError: if the store fails.
        :raises StoreClosed: if the store was closed.
        """
        await self._load()
        count, after = 0, self._position
        while page := await self._store.read_feed(
            after, PAGE_SIZE, kinds=self._kinds, session_ids=self._sessions
        ):
            count += len(page)
            after = page[-1].position
        return count

    async def dead_letters(self) -> list[DeadLetter]:
        """The records given up on, by position (they survive restarts).

        :raises StorageError: if the store fails.
        :raises StoreClosed: if the store was closed.
        """
        return await (await self._load()).dead_letters()

    async def retry_dead_letters(self) -> int:
        """Deliver each dead-lettered record again (with retries); how many succeeded.

        Those that succeed leave the dead letters; those that fail again are
        stored again with the new error; those whose record is gone (its
        session deleted) stay.

        :raises ConsumerBusy: with ``wait=False``, if another instance holds the lease.
        :raises StorageError: if the store fails.
        :raises StoreClosed: if the store was closed.
        """
        running = self._task is not None
        if not running:
            self._stopping.clear()
            await self._acquire(wait=self._wait)
        try:
            return await self._retry(await self._load())
        finally:
            if not running:
                await self._release()

    async def _retry(self, state: ConsumerState) -> int:
        done: set[int] = set()
        for letter in await state.dead_letters():
            found = await self._store.read(letter.session_id, letter.branch_id, letter.sequence, 1)
            if not found or found[0].event_id != letter.event_id:
                continue
            try:
                async with self._handling:
                    again = await self._deliver(found[0])
            except _Stopped:
                break
            if again is None:
                done.add(letter.position)
            else:
                attempts = letter.attempts + again.attempts
                first = letter.first_failed_at
                await state.add_dead_letter(
                    msgspec.structs.replace(again, attempts=attempts, first_failed_at=first)
                )
        await state.remove_dead_letters(done)
        return len(done)

    async def reset(self, position: int) -> None:
        """Move the checkpoint to ``position``: records after it are delivered (again).

        :raises ValueError: for a negative or non-int position.
        :raises ConsumerBusy: with ``wait=False``, if another instance holds the lease.
        :raises StorageError: if the store fails.
        :raises StoreClosed: if the store was closed.
        """
        if type(position) is not int or position < 0:
            raise ValueError(f"position must be an int >= 0, got {position!r}")
        running = self._task is not None
        if not running:
            await self._acquire(wait=self._wait)
        try:
            state = await self._load()
            async with self._handling:
                await self._settle_save()
                self._generation += 1
                self._position = position
                await state.save_position(position)
                self._requested, self._unsaved, self._unsaved_since = position, 0, None
            self._wake.set()
        finally:
            if not running:
                await self._release()
