"""``EventJournal``: a store plus its committed stream, so that every commit is a live event.

The journal is a thin layer. It registers one listener on the store; every
commit the store reports (this process's, and other processes' where the
store sees them) goes to the hub, for per-branch and live subscriptions, and
to one feed pump, for resumable ``subscribe_all(after=...)``. Nothing is
published by the writing call itself, so publishing follows commit order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from os import PathLike
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import msgspec

from eventstore import (
    MAIN,
    BranchInfo,
    EventRecord,
    EventStore,
    FileEventStore,
    InvalidEvent,
    MergeResult,
    StoreClosed,
    new_ulid,
)
from stream import (
    AllSubscription,
    BranchSubscription,
    EventStreamHub,
    FeedPump,
    FeedSubscription,
    Subscription,
)

from ._consumer import Consumer, Handler
from ._diff import BranchDiff, diff_branches
from ._typed import EventTypes

__all__ = ("EventJournal", "open_journal")

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")


def _store_method(
    method: Callable[Concatenate[EventStore, P], R],
) -> Callable[Concatenate[EventJournal, P], R]:
    """A journal method that is the store's own: same signature, docstring and errors.

    Reads go straight to the store; after :meth:`EventJournal.close` the store
    is closed too, so they raise :class:`~eventstore.StoreClosed` as it does.
    """
    name = method.__name__

    @functools.wraps(method)
    def call(journal: EventJournal, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return getattr(journal.store, name)(*args, **kwargs)  # type: ignore[no-any-return]

    call.__qualname__ = f"EventJournal.{name}"
    return call


class _Publisher:
    """The journal's one store listener: commits to the hub and the feed pump."""

    __slots__ = ("hub", "pump")

    def __init__(self, hub: EventStreamHub, pump: FeedPump) -> None:
        self.hub = hub
        self.pump = pump

    def committed(self, records: Sequence[EventRecord]) -> None:
        self.hub.publish_batch(records)
        self.pump.committed(records)


class EventJournal:
    """An :class:`~eventstore.EventStore` whose commits are published to live subscribers.

    Every write goes to the store; the store tells the journal's one listener
    what it committed, in commit order, before the write returns, and the
    journal publishes that: so a subscriber can always re-read what it
    missed, and an idempotent retry (nothing committed) publishes nothing.
    No lock is held across a durable write: :meth:`record` lets the store
    pick the sequence when it accepts the write
    (:meth:`~eventstore.EventStore.append_next`).

    The journal owns the store and hub it is given: :meth:`close` ends every
    subscription and closes both. Commits of other processes arrive where the
    store can see them (a read-only file store following the writer,
    PostgreSQL's notifications).

    History cannot be changed from outside: the store keeps its own copy of
    each record, every read returns new records, and every subscriber receives
    its own copy of each live event. So mutating the payload passed to
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
        self._pump = FeedPump(store)
        self._stop_listening = store.add_listener(_Publisher(self._hub, self._pump))
        self._closed = False

    @property
    def types(self) -> EventTypes:
        """The typed-event registry used by :meth:`record_typed` and :meth:`decode`."""
        return self._types

    @property
    def store(self) -> EventStore:
        """The underlying store; its writes are published too (the journal listens to it)."""
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
        """Open the store; return once other processes' commits reach the journal too.

        :raises StoreClosed: if the journal was closed.
        :raises StoreLocked: (file store) if another writer holds the root.
        """
        self._check_open()
        await self._store.open()
        await self._store.listening()
        return self

    async def close(self) -> None:
        """End every subscription, stop listening, close hub and store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop_listening()
        self._pump.close()
        self._hub.close()
        await self._store.close()

    async def aclose(self) -> None:
        """Alias of :meth:`close`."""
        await self.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the journal is closed")

    # -- writes ----------------------------------------------------------------

    async def append(self, event: EventRecord) -> EventRecord:
        """Store ``event`` at ``head + 1`` of its branch; the commit is published.

        Safe to retry with the same ``event_id``: a record the session already
        holds under it (same content) is returned and nothing is written or
        published again (see :meth:`~eventstore.EventStore.append`).

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
        return await self._store.append(event)

    async def append_and_publish(self, event: EventRecord) -> EventRecord:
        """The original design's name for :meth:`append`, kept for ported code."""
        return await self.append(event)

    async def append_batch(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Store contiguous events of one session and branch, all or nothing; published.

        :raises SequenceConflict: if the first sequence is not ``head + 1``.
        :raises InvalidEvent: for an empty, mixed or non-contiguous batch.
        :raises BranchClosed, InvalidIdentifier, StorageError, StoreClosed: as :meth:`append`.
        """
        self._check_open()
        return await self._store.append_batch(events)

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
        """Append a new event at the next sequence of the branch; the commit is published.

        Without ``expected_sequence`` the store picks the sequence when it
        accepts the write (:meth:`~eventstore.EventStore.append_next`): no lock
        is held while the write becomes durable, concurrent calls never
        collide, and the file store commits them together.

        With ``expected_sequence`` (the head the caller last saw, 0 for an
        empty branch) it is an optimistic check: the event is written at
        ``expected_sequence + 1`` or not at all, never retried.

        With ``event_id`` (a ULID from :func:`~eventstore.new_ulid`, made once
        per event) the call is safe to retry after any failure: if the session
        already holds that id with the same branch, kind, data and metadata, the
        stored record is returned and nothing is written, even if the head moved
        on since (see :meth:`~eventstore.EventStore.append`). Without it every
        call makes a new id, so a retry may store the event twice.

        :returns: the stored record, with its sequence and feed position.
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
        _check_expected(expected_sequence)
        self._check_open()
        # The store validates it (before any I/O) and, without an expected
        # sequence, numbers it: no second check here on the hot path.
        draft = EventRecord(
            session_id,
            branch_id,
            1 if expected_sequence is None else expected_sequence + 1,
            kind,
            data,
            {} if metadata is None else metadata,
            new_ulid() if event_id is None else event_id,
        )
        if expected_sequence is None:
            return (await self._store.append_next([draft]))[0]
        return await self._store.append(draft)

    async def record_batch(
        self,
        session_id: str,
        items: Iterable[tuple[str, Any]],
        *,
        branch_id: str = MAIN,
        metadata: dict[str, Any] | None = None,
        expected_sequence: int | None = None,
    ) -> list[EventRecord]:
        """Append ``(kind, data)`` pairs as one atomic batch at the branch's next sequences.

        Sequences are picked as :meth:`record` picks them (by the store, or at
        ``expected_sequence + 1`` onwards as an optimistic check); every event
        carries its own copy of ``metadata``.

        :returns: the stored records, in order.
        :raises InvalidEvent: for no items, an item that is not a ``(kind,
            data)`` pair, an empty kind or a payload that is not plain JSON.
        :raises SequenceConflict, ValueError, BranchClosed, InvalidIdentifier,
            StorageError, StoreClosed: as :meth:`record`.
        """
        _check_expected(expected_sequence)
        start = 1 if expected_sequence is None else expected_sequence + 1
        drafts: list[EventRecord] = []
        for sequence, item in enumerate(items, start):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise InvalidEvent(f"items must be (kind, data) pairs, got {item!r:.100}")
            kind, data = item
            meta = None if metadata is None else dict(metadata)
            drafts.append(
                EventRecord.new(session_id, branch_id, sequence, kind, data, metadata=meta)
            )
        if not drafts:
            raise InvalidEvent("record_batch needs at least one item")
        self._check_open()
        if expected_sequence is None:
            return await self._store.append_next(drafts)
        return await self._store.append_batch(drafts)

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

    async def merge_branch(
        self, session_id: str, source_branch: str, target_branch: str
    ) -> MergeResult:
        """Merge the source's own events onto the target; the commit is published there.

        Subscribers of the target receive the merged records (each carrying
        ``metadata["merged_from"]``) like any other append.

        :raises BranchNotFound: if either branch does not exist.
        :raises BranchClosed: if either branch was already merged.
        :raises InvalidBranchOperation: for a merge into itself or a descendant.
        :raises InvalidIdentifier: for a bad id.
        :raises StoreClosed: after :meth:`close`.
        """
        self._check_open()
        result = await self._store.merge_branch(session_id, source_branch, target_branch)
        self._ended(session_id, source_branch)
        return result

    # -- session lifecycle -------------------------------------------------------

    async def close_branch(self, session_id: str, branch_id: str = MAIN) -> BranchInfo:
        """:meth:`EventStore.close_branch <eventstore.EventStore.close_branch>`, then end
        the branch's subscriptions once they delivered its last event.

        :raises BranchNotFound, InvalidIdentifier, StorageError, StoreClosed: as the store's.
        """
        self._check_open()
        info = await self._store.close_branch(session_id, branch_id)
        self._ended(session_id, branch_id)
        return info

    async def delete_session(self, session_id: str) -> bool:
        """:meth:`EventStore.delete_session <eventstore.EventStore.delete_session>`, then
        end the session's subscriptions at once.

        :raises InvalidIdentifier, StorageError, StoreClosed: as the store's.
        """
        self._check_open()
        try:
            return await self._store.delete_session(session_id)
        finally:
            # Even after a failure: the session may be gone (see the store's docs).
            self._ended(session_id, erased=True)

    async def delete_branch(self, session_id: str, branch_id: str) -> None:
        """:meth:`EventStore.delete_branch <eventstore.EventStore.delete_branch>`, then
        end the branch's subscriptions at once.

        :raises BranchNotFound, InvalidBranchOperation, InvalidIdentifier, StorageError,
            StoreClosed: as the store's.
        """
        self._check_open()
        await self._store.delete_branch(session_id, branch_id)
        self._ended(session_id, branch_id, erased=True)

    async def expire(self, *, idle_for: timedelta) -> list[str]:
        """:meth:`EventStore.expire <eventstore.EventStore.expire>`; the deleted
        sessions' subscriptions end.

        :raises TypeError, ValueError, StorageError, StoreClosed: as the store's.
        """
        self._check_open()
        deleted = await self._store.expire(idle_for=idle_for)
        for session_id in deleted:
            self._ended(session_id, erased=True)
        return deleted

    def _ended(
        self, session_id: str, branch_id: str | None = None, *, erased: bool = False
    ) -> None:
        """Announce that a branch (or a whole session) takes no more events.

        The one place subscriptions learn it, in this process: fed by this
        journal's own closes, merges and deletes.
        """
        self._hub.end_branch(session_id, branch_id, drop=erased)

    # -- the store's own operations (same arguments, docstrings and errors) -------

    create_branch = _store_method(EventStore.create_branch)
    read = _store_method(EventStore.read)
    iter_events = _store_method(EventStore.iter_events)
    head = _store_method(EventStore.head)
    list_branches = _store_method(EventStore.list_branches)
    branch_info = _store_method(EventStore.branch_info)
    list_sessions = _store_method(EventStore.list_sessions)
    sessions = _store_method(EventStore.sessions)
    read_feed = _store_method(EventStore.read_feed)
    feed_head = _store_method(EventStore.feed_head)
    get_event = _store_method(EventStore.get_event)
    get_by_key = _store_method(EventStore.get_by_key)
    read_last = _store_method(EventStore.read_last)
    read_at = _store_method(EventStore.read_at)
    copy_session = _store_method(EventStore.copy_session)

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
        self,
        session_id: str,
        branch_id: str = MAIN,
        after_sequence: int = 0,
        *,
        kinds: Iterable[str] | None = None,
    ) -> Subscription:
        """Every event of the branch after ``after_sequence``: the backlog, then live.

        In order, with no gap and no duplicate at the seam, however far behind
        the consumer falls; on a fork the inherited events come first. Use it
        as ``async with journal.subscribe(...) as sub: async for event in sub``.

        :param kinds: only events of these kinds (default: all), filtered
            before delivery.
        :raises InvalidIdentifier: for a bad id.
        :raises ValueError: for a negative ``after_sequence``.
        :raises TypeError: for ``kinds`` that are not non-empty strings.
        :raises StoreClosed: after :meth:`close`.
        """
        self._check_open()
        return BranchSubscription(
            self._store, self._hub, session_id, branch_id, after_sequence, kinds=kinds
        )

    def subscribe_all(
        self,
        *,
        after: int | None = None,
        kinds: Iterable[str] | None = None,
        session_ids: Iterable[str] | None = None,
    ) -> Subscription:
        """Events of every session and branch, filtered; resumable from a feed position.

        With ``after=None``, live events from now on: per session and branch
        in order and once each, also after the live buffer overflowed (the
        loss is re-read from the store). With an int, every record with
        ``position > after`` (0: the whole feed): the backlog, then live, in
        position order with no gap and no duplicate; save the last record's
        ``position`` (or the subscription's) to resume there after a restart.

        :param after: the feed position to resume after, or ``None``.
        :param kinds: only events of these kinds (default: all).
        :param session_ids: only events of these sessions (default: all).
        :raises ValueError: for a negative or non-int ``after``.
        :raises TypeError: for ``kinds`` or ``session_ids`` that are not
            non-empty strings.
        :raises InvalidIdentifier: for a bad session id.
        :raises StoreClosed: after :meth:`close`.
        """
        self._check_open()
        if after is None:
            return AllSubscription(self._store, self._hub, kinds=kinds, session_ids=session_ids)
        return FeedSubscription(
            self._pump,
            after,
            kinds=kinds,
            session_ids=session_ids,
            buffer=self._hub.max_buffer_size,
        )

    def consumer(
        self,
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
    ) -> Consumer:
        """A durable consumer: every feed record after its checkpoint, at least once.

        ``handler`` is ``async def handler(event) -> None``, called with each
        record (filtered by ``kinds`` and ``session_ids``) in position order,
        one at a time. The checkpoint, the dead letters and the lease live in
        the store (:meth:`~eventstore.EventStore.consumer_state`), so a restart
        resumes there; after a crash at most the unacknowledged tail (see
        :mod:`journal._consumer`) is delivered again: dedupe by ``event_id``.
        A handler that raises is retried after ``backoff * 2**(n-1)`` seconds
        (at most ``max_backoff``, scaled by a random factor in ``[0.5, 1)``)
        until ``max_attempts`` deliveries failed; then the record is stored as
        a :class:`~eventstore.DeadLetter` and the consumer goes on.

        One instance runs per name across processes, under a lease that lapses
        ``lease_seconds`` after its holder dies (the file store's lapses when
        the holder's process ends); another instance waits for it, or raises
        :class:`ConsumerBusy` with ``wait=False``.

        :raises InvalidIdentifier: for a bad name or session id.
        :raises ValueError: for a bad ``max_attempts``, ``backoff``,
            ``max_backoff`` or ``lease_seconds``.
        :raises TypeError: for ``kinds`` or ``session_ids`` that are not
            non-empty strings.
        :raises StoreClosed: after :meth:`close`.
        """
        self._check_open()
        return Consumer(
            self._store,
            name,
            handler,
            kinds=kinds,
            session_ids=session_ids,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
            lease_seconds=lease_seconds,
            wait=wait,
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


def _check_expected(expected_sequence: object) -> None:
    if expected_sequence is not None and (
        type(expected_sequence) is not int or expected_sequence < 0
    ):
        raise ValueError(f"expected_sequence must be an int >= 0, got {expected_sequence!r}")


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
    return EventJournal(FileEventStore(root, **opts), hub, types=types)
