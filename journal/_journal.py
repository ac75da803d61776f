"""``EventJournal``: a store plus a hub, so that every write is also a live event."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec

from eventstore import (
    MAIN,
    BranchInfo,
    EventRecord,
    EventStore,
    InvalidEvent,
    MergeResult,
    Position,
    SequenceConflict,
    StoreClosed,
)
from stream import AllSubscription, BranchSubscription, EventStreamHub, Subscription

from ._diff import BranchDiff, diff_branches
from ._typed import EventTypes

__all__ = ("EventJournal", "open_journal")

logger = logging.getLogger("journal")

S = TypeVar("S")

#: Longest pause between restarts of a failing ``store.watch()``.
_MAX_WATCH_BACKOFF = 2.0


class EventJournal:
    """An :class:`~eventstore.EventStore` whose writes are published to live subscribers.

    Every write goes to the store first and is published to the hub only once
    stored, so a subscriber can always re-read what it missed. Writes to one
    session take that session's lock, which both allocates sequences for
    :meth:`record` and keeps publishing in sequence order.

    The journal owns the store and hub it is given: :meth:`close` ends every
    subscription, stops the journal's background task and closes both. When
    the store has writers in other processes (``store.shared_writers``), one
    background task follows ``store.watch()`` and publishes their events too.

    History cannot be changed from outside: the store keeps its own copy of
    each record, every read returns new records, and every subscriber receives
    its own copy of each live event (the hub snapshots a record once when it is
    published and copies it per delivery). So mutating the payload passed to
    :meth:`record`, the record it returns, a record read, or a subscriber's
    event changes nothing anyone else sees.

    :param store: where events live.
    :param hub: where live events are published (default: a new
        :class:`~stream.EventStreamHub`).
    :param types: tagged msgspec Struct types for :meth:`record_typed` and
        :meth:`decode` (default: an empty registry; add with ``types.register``).
    """

    def __init__(
        self,
        store: EventStore,
        hub: EventStreamHub | None = None,
        *,
        types: EventTypes | None = None,
    ) -> None:
        self._store = store
        self._hub = EventStreamHub() if hub is None else hub
        self._types = EventTypes() if types is None else types
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._watcher: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()
        self._closed = False

    @property
    def types(self) -> EventTypes:
        """The typed-event registry used by :meth:`record_typed` and :meth:`decode`."""
        return self._types

    @property
    def store(self) -> EventStore:
        """The underlying store (reads through it bypass nothing; writes would not publish)."""
        return self._store

    @property
    def hub(self) -> EventStreamHub:
        """The hub live events are published to."""
        return self._hub

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> Self:
        """Open the store and, for a store with other writers, start following them.

        :raises StoreClosed: if the journal was closed.
        :raises StoreLocked: (file store) if another writer holds the root.
        """
        if self._closed:
            raise StoreClosed("the journal is closed")
        await self._store.open()
        self._start_watcher()
        if self._watcher is not None:
            # Events other processes commit right after open() must not be missed:
            # return only once the store listens (or listening failed and is retried).
            listening = asyncio.ensure_future(self._watching.wait())
            await asyncio.wait({self._watcher, listening}, return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
        return self

    async def close(self) -> None:
        """End every subscription, stop the background task, close hub and store.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            # wait() rather than await: our own cancellation must still propagate.
            await asyncio.wait({watcher})
            if not watcher.cancelled() and watcher.exception() is not None:
                logger.error("the watch task failed", exc_info=watcher.exception())
        self._hub.close()
        await self._store.close()

    async def aclose(self) -> None:
        """Alias of :meth:`close`."""
        await self.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the journal is closed")

    def _lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    # -- writes ----------------------------------------------------------------

    async def append(self, event: EventRecord) -> EventRecord:
        """Store ``event`` at ``head + 1`` of its branch, then publish it.

        Safe to retry with the same ``event_id``: a record the session already
        holds under it (same content) is returned and published, nothing is
        written (see :meth:`~eventstore.EventStore.append`).

        :raises SequenceConflict: if ``event.sequence`` is not ``head + 1``.
        :raises BranchClosed: if the branch was merged.
        :raises InvalidIdentifier: for a bad session or branch id.
        :raises InvalidEvent: for a bad kind, event id, sequence or payload, or an
            ``event_id`` the session holds with other content.
        :raises StorageError: if the storage failed. Nothing was published; the
            write may or may not have happened: retry the same event to find out.
        :raises StoreClosed: after :meth:`close`.
        """
        if not isinstance(event, EventRecord):
            raise InvalidEvent(f"expected an EventRecord, got {type(event).__name__}")
        self._check_open()
        async with self._lock(event.session_id):
            stored = await self._store.append(event)
            self._hub.publish(stored)
        return stored

    async def append_and_publish(self, event: EventRecord) -> EventRecord:
        """The original design's name for :meth:`append`, kept for ported code."""
        return await self.append(event)

    async def append_batch(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Store contiguous events of one session and branch, all or nothing; then publish.

        :raises SequenceConflict: if the first sequence is not ``head + 1``.
        :raises InvalidEvent: for an empty, mixed or non-contiguous batch.
        :raises BranchClosed, InvalidIdentifier, StorageError, StoreClosed: as :meth:`append`.
        """
        batch = list(events)
        if not batch or not isinstance(batch[0], EventRecord):
            # The store words the error; nothing to lock for a batch it refuses.
            return await self._store.append_batch(batch)
        self._check_open()
        async with self._lock(batch[0].session_id):
            stored = await self._store.append_batch(batch)
            self._hub.publish_batch(stored)
        return stored

    async def record(
        self,
        session_id: str,
        kind: str,
        data: Any = None,
        *,
        branch_id: str = MAIN,
        metadata: dict[str, Any] | None = None,
        expected_sequence: int | None = None,
        event_id: str | None = None,
    ) -> EventRecord:
        """Append a new event at the next sequence of the branch and publish it.

        Without ``expected_sequence`` the next sequence is taken under the
        session's lock, so concurrent calls in this process never collide; if
        the store has writers in other processes (``store.shared_writers``) a
        :class:`SequenceConflict` from one of them is retried at the new head.

        With ``expected_sequence`` (the head the caller last saw, 0 for an
        empty branch) it is an optimistic check: the event is written at
        ``expected_sequence + 1`` or not at all, never retried.

        With ``event_id`` (a ULID from :func:`~eventstore.new_ulid`, made once
        per event) the call is safe to retry after any failure: if the session
        already holds that id with the same branch, kind, data and metadata, the
        stored record is returned (and published) and nothing is written, even
        if the head moved on since (see :meth:`~eventstore.EventStore.append`).
        Without it every call makes a new id, so a retry may store the event twice.

        :returns: the stored record.
        :raises SequenceConflict: if ``expected_sequence`` is no longer the head;
            ``expected`` is the sequence the store wanted (``head + 1``) and
            ``actual`` the one implied (``expected_sequence + 1``).
        :raises ValueError: for a negative or non-int ``expected_sequence``.
        :raises BranchClosed: if the branch was merged.
        :raises InvalidIdentifier: for a bad session or branch id.
        :raises InvalidEvent: for an empty kind, a bad ``event_id``, a payload
            that is not plain JSON, or an ``event_id`` the session holds with other
            content.
        :raises StorageError: if the storage failed. Nothing was published, but
            the write may or may not have happened (a reply lost after the commit
            looks the same): retry with the same ``event_id`` to find out.
        :raises StoreClosed: after :meth:`close`.
        """
        if expected_sequence is not None and (
            type(expected_sequence) is not int or expected_sequence < 0
        ):
            raise ValueError(f"expected_sequence must be an int >= 0, got {expected_sequence!r}")
        # Validate everything before any I/O; the sequence is filled in below.
        draft = EventRecord.new(
            session_id, branch_id, 1, kind, data, metadata=metadata, event_id=event_id
        )
        self._check_open()
        store = self._store
        async with self._lock(session_id):
            if expected_sequence is None:
                sequence = await store.head(session_id, branch_id) + 1
            else:
                sequence = expected_sequence + 1
            while True:
                event = msgspec.structs.replace(draft, sequence=sequence)
                try:
                    stored = await store.append(event)
                except SequenceConflict as conflict:
                    if expected_sequence is not None or not store.shared_writers:
                        raise
                    # Another process won this sequence; each retry moves forward.
                    sequence = max(conflict.expected, sequence + 1)
                    continue
                self._hub.publish(stored)
                return stored

    async def record_typed(
        self,
        session_id: str,
        event: msgspec.Struct,
        *,
        branch_id: str = MAIN,
        metadata: dict[str, Any] | None = None,
        expected_sequence: int | None = None,
        event_id: str | None = None,
    ) -> EventRecord:
        """Record a typed event: ``kind`` from its tag, ``data`` from its fields.

        Like :meth:`record` otherwise (``event_id`` makes it safe to retry); the
        type must be in :attr:`types`.

        :raises UnknownEventKind: if the event's type is not registered.
        :raises SequenceConflict, BranchClosed, InvalidIdentifier, InvalidEvent,
            StorageError, StoreClosed: as :meth:`record`.
        """
        kind, data = self._types.kind_and_data(event)
        return await self.record(
            session_id,
            kind,
            data,
            branch_id=branch_id,
            metadata=metadata,
            expected_sequence=expected_sequence,
            event_id=event_id,
        )

    def decode(self, record: EventRecord) -> msgspec.Struct:
        """The typed event stored in ``record``.

        :raises UnknownEventKind: if no registered type has ``record.kind``.
        :raises EventDecodeError: if ``record.data`` does not match that type.
        Both name the record's session, branch and sequence.
        """
        return self._types.decode(record)

    async def create_branch(
        self,
        session_id: str,
        branch_id: str,
        *,
        from_branch: str = MAIN,
        fork_sequence: int | None = None,
    ) -> BranchInfo:
        """Fork ``from_branch`` at ``fork_sequence`` (default: its head), copying nothing.

        :raises BranchExists: if ``branch_id`` exists.
        :raises BranchNotFound: if ``from_branch`` does not (``main`` always does).
        :raises BranchClosed: if ``from_branch`` was merged.
        :raises InvalidBranchOperation: if ``fork_sequence`` is outside ``0..head``.
        :raises InvalidIdentifier: for a bad id.
        :raises StoreClosed: after :meth:`close`.
        """
        self._check_open()
        return await self._store.create_branch(
            session_id, branch_id, from_branch=from_branch, fork_sequence=fork_sequence
        )

    async def merge_branch(
        self, session_id: str, source_branch: str, target_branch: str
    ) -> MergeResult:
        """Merge the source's own events onto the target and publish them there.

        Subscribers of the target receive the merged records (each carrying
        ``metadata["merged_from"]``) like any other append.

        :raises BranchNotFound: if either branch does not exist.
        :raises BranchClosed: if either branch was already merged.
        :raises InvalidBranchOperation: for a merge into itself or a descendant.
        :raises InvalidIdentifier: for a bad id.
        :raises StoreClosed: after :meth:`close`.
        """
        self._check_open()
        store = self._store
        async with self._lock(session_id):
            result = await store.merge_branch(session_id, source_branch, target_branch)
            if result.merged_events:
                first = result.target_head - result.merged_events + 1
                async for event in store.iter_events(
                    session_id, target_branch, first, to_sequence=result.target_head
                ):
                    self._hub.publish(event)
        return result

    # -- reads -----------------------------------------------------------------

    async def read(
        self,
        session_id: str,
        branch_id: str = MAIN,
        from_sequence: int = 1,
        limit: int | None = None,
        *,
        to_sequence: int | None = None,
    ) -> list[EventRecord]:
        """The branch's logical history, ascending, ``from_sequence <= seq <= to_sequence``.

        :raises InvalidIdentifier: for a bad id.
        :raises ValueError: for a negative bound or limit.
        :raises StoreClosed: after :meth:`close`.
        """
        return await self._store.read(
            session_id, branch_id, from_sequence, limit, to_sequence=to_sequence
        )

    def iter_events(
        self,
        session_id: str,
        branch_id: str = MAIN,
        from_sequence: int = 1,
        limit: int | None = None,
        *,
        to_sequence: int | None = None,
    ) -> AsyncIterator[EventRecord]:
        """Like :meth:`read`, streamed in pages without holding the history in memory."""
        return self._store.iter_events(
            session_id, branch_id, from_sequence, limit, to_sequence=to_sequence
        )

    async def head(self, session_id: str, branch_id: str = MAIN) -> int:
        """The last sequence of the branch, 0 if it has none.

        :raises InvalidIdentifier: for a bad id.
        :raises StoreClosed: after :meth:`close`.
        """
        return await self._store.head(session_id, branch_id)

    async def list_branches(self, session_id: str) -> list[BranchInfo]:
        """Every branch of the session, sorted by id; ``[]`` for an unknown session.

        :raises InvalidIdentifier: for a bad id.
        :raises StoreClosed: after :meth:`close`.
        """
        return await self._store.list_branches(session_id)

    async def branch_info(self, session_id: str, branch_id: str = MAIN) -> BranchInfo:
        """Parent, fork point, head, creation time and merge state of a branch.

        :raises BranchNotFound: if the branch does not exist (``main`` always does).
        :raises InvalidIdentifier: for a bad id.
        :raises StoreClosed: after :meth:`close`.
        """
        return await self._store.branch_info(session_id, branch_id)

    async def list_sessions(self) -> list[str]:
        """Every session id, sorted.

        :raises StoreClosed: after :meth:`close`.
        """
        return await self._store.list_sessions()

    async def fold(
        self,
        session_id: str,
        reducer: Callable[[S, EventRecord], S],
        initial: S,
        *,
        branch_id: str = MAIN,
        to_sequence: int | None = None,
    ) -> S:
        """The state after applying ``reducer`` to each event, oldest first.

        Streams the history, so memory stays flat however long it is; with
        ``to_sequence`` it is the state as it was at that step.

        :raises InvalidIdentifier: for a bad id.
        :raises ValueError: for a negative ``to_sequence``.
        :raises StoreClosed: after :meth:`close`.
        """
        state = initial
        async for event in self._store.iter_events(session_id, branch_id, to_sequence=to_sequence):
            state = reducer(state, event)
        return state

    # -- live ------------------------------------------------------------------

    def subscribe(
        self, session_id: str, branch_id: str = MAIN, after_sequence: int = 0
    ) -> Subscription:
        """Every event of the branch after ``after_sequence``: the backlog, then live.

        In order, with no gap and no duplicate at the seam, however far behind
        the consumer falls; on a fork the inherited events come first. Use it
        as ``async with journal.subscribe(...) as sub: async for event in sub``.

        :raises InvalidIdentifier: for a bad id.
        :raises ValueError: for a negative ``after_sequence``.
        :raises StoreClosed: after :meth:`close`.
        """
        self._check_open()
        self._start_watcher()
        return BranchSubscription(self._store, self._hub, session_id, branch_id, after_sequence)

    def subscribe_all(
        self,
        *,
        kinds: Iterable[str] | None = None,
        session_ids: Iterable[str] | None = None,
    ) -> Subscription:
        """Live events of every session and branch from now on, filtered.

        Per session and branch they arrive in order and once each, also after
        the live buffer overflowed (the loss is re-read from the store).

        :param kinds: only events of these kinds (default: all).
        :param session_ids: only events of these sessions (default: all).
        :raises InvalidIdentifier: for a bad session id.
        :raises StoreClosed: after :meth:`close`.
        """
        self._check_open()
        self._start_watcher()
        return AllSubscription(self._store, self._hub, kinds=kinds, session_ids=session_ids)

    # -- other writers -----------------------------------------------------------

    def _start_watcher(self) -> None:
        if self._watcher is not None or not self._store.shared_writers:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the next subscribe or open starts it
        self._watcher = asyncio.create_task(self._follow(), name="eventjournal-watch")

    async def _follow(self) -> None:
        """Publish what other processes append, until cancelled or the store ends."""
        delay = 0.05
        while not self._closed:
            try:
                watch: Any = self._store.watch()
                if hasattr(watch, "__aenter__"):
                    async with watch as positions:
                        self._watching.set()
                        await self._publish_all(positions)
                else:
                    self._watching.set()
                    await self._publish_all(watch)
                return
            except StoreClosed:
                return
            except Exception:
                self._watching.set()
                # A lost connection must not end live delivery for good; the
                # subscribers' gap logic re-reads whatever passed meanwhile.
                logger.exception("store.watch() failed; restarting in %.2fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_WATCH_BACKOFF)

    async def _publish_all(self, positions: AsyncIterator[Position]) -> None:
        async for position in positions:
            await self._publish_position(position)

    async def _publish_position(self, position: Position) -> None:
        records = await self._store.read(
            position.session_id,
            position.branch_id,
            position.sequence,
            to_sequence=position.sequence,
        )
        for record in records:
            if record.branch_id == position.branch_id:
                self._hub.publish(record)

    def __del__(self) -> None:
        watcher = getattr(self, "_watcher", None)
        if watcher is not None and not watcher.done():
            import warnings

            warnings.warn(
                "EventJournal was never closed; its watch task is still running",
                ResourceWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventJournal {state} store={self._store!r}>"

    async def diff(self, session_id: str, branch_a: str, branch_b: str) -> BranchDiff:
        """The last sequence two branches share and each one's records after it.

        What ``eventstore diff`` prints; see :func:`~journal.replay` for a fork
        made at a replay's divergence.

        :raises BranchNotFound: if either branch does not exist (``main`` always does).
        :raises InvalidIdentifier: for a bad id.
        :raises StoreClosed: after :meth:`close`.
        """
        return await diff_branches(self._store, session_id, branch_a, branch_b)


def open_journal(
    root: str | PathLike[str],
    *,
    hub: EventStreamHub | None = None,
    types: EventTypes | None = None,
    **opts: Any,
) -> EventJournal:
    """An unopened :class:`EventJournal` over a :class:`~eventstore.FileEventStore` in ``root``.

    ``hub`` and ``types`` go to the journal, ``opts`` to the store
    (``durability``, ``read_only``, ``max_record_size``). The journal is its
    own async context manager: the store is opened on entry and closed, with
    every subscription, on exit::

        async with open_journal("./events") as journal:
            await journal.record("chat-1", "message", {"text": "hi"})

    It is a plain object, not a generator-based context manager, so a journal
    entered by hand (``await open_journal(root).__aenter__()``, or
    :meth:`EventJournal.open`) lives until it is closed: a framework's
    ``loop.shutdown_asyncgens()`` between runs cannot close it.

    :raises ValueError: for a bad store option (``durability``...).
    :raises StoreLocked: on entry, if another process writes to ``root``.
    """
    from eventstore.file import FileEventStore

    return EventJournal(FileEventStore(root, **opts), hub, types=types)
