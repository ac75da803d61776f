"""The :class:`EventStore` contract every backend implements.

The public coroutines validate their arguments (before any I/O) and check the
store is open, then call the backend's underscore hooks. A backend implements
the hooks; it never re-validates and never sees bad input.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import ClassVar, Protocol, Self

import msgspec

from ._consumers import ConsumerInfo, ConsumerState, MemoryConsumerState
from ._errors import (
    BranchExists,
    BranchNotFound,
    InvalidBranchOperation,
    InvalidEvent,
    SequenceConflict,
    StoreClosed,
)
from ._ids import MAIN, check_identifier
from ._json import encode_sorted
from ._lineage import parents_first
from ._records import BranchInfo, EventRecord, MergeResult, SessionInfo, utc_now
from ._validate import (
    SessionQuery,
    check_batch,
    check_event,
    check_event_id_arg,
    check_feed_args,
    check_idle_for,
    check_key_arg,
    check_kinds,
    check_next_batch,
    check_range,
    check_sequence_arg,
    check_sequences,
    check_sessions_query,
)

__all__ = (
    "IDEMPOTENCY_WINDOW",
    "EventStore",
    "StoreListener",
    "replay",
    "resolve_retry",
    "same_write",
)

#: Records per page when a backend streams by paging through ``_read``.
PAGE_SIZE = 1000

#: Event ids a store recognises at least, per branch: those of the branch's last
#: this many records. The memory and PostgreSQL stores recognise every id; the file
#: store those in this window, read from the tail of each branch's file on the
#: first write to a session after the store opens.
IDEMPOTENCY_WINDOW = 10_000


def same_write(stored: EventRecord, event: EventRecord) -> bool:
    """Whether ``event`` asks for what ``stored`` holds: a retry of that write.

    The branch, ``kind``, ``data`` and ``metadata`` count (as JSON: key order
    aside, ``1``, ``1.0`` and ``true`` differ); the ``sequence`` and
    ``recorded_at`` do not, since a retry at the new head builds them afresh.
    """
    return (
        stored.branch_id == event.branch_id
        and stored.kind == event.kind
        and encode_sorted(stored.data) == encode_sorted(event.data)
        and encode_sorted(stored.metadata) == encode_sorted(event.metadata)
    )


def replay(
    batch: Sequence[EventRecord], found: Sequence[EventRecord | None]
) -> list[EventRecord] | None:
    """The one rule of idempotent writes, given what is stored under the batch's ids.

    ``found[i]`` is the record the session holds with ``batch[i].event_id``, or
    ``None``. If none is stored the batch is new: return ``None``. If every one is,
    each with the same content, the batch was written before: return the stored
    records, and write nothing.

    :raises InvalidEvent: if only some of the ids are stored, or one is stored
        with other content (another event reusing the id).
    """
    hits = [stored for stored in found if stored is not None]
    if not hits:
        return None
    first = batch[0]
    for stored, event in zip(found, batch, strict=True):
        if stored is None:
            raise InvalidEvent(
                f"a batch retried in part: event_id {hits[0].event_id} is already stored in "
                f"session {first.session_id!r} and event_id {event.event_id} is not"
            )
        if not same_write(stored, event):
            raise InvalidEvent(
                f"event_id {event.event_id} is already stored in session "
                f"{first.session_id!r} ({stored.branch_id}#{stored.sequence}) with other content"
            )
    return hits


def resolve_retry(
    stored: Sequence[EventRecord], batch: Sequence[EventRecord], head: int
) -> list[EventRecord]:
    """Handle a new batch that does not start at ``head + 1``.

    ``stored`` are the records already at the batch's sequences. If they carry the
    batch's event ids this is a retry of an acknowledged write: return them (a
    store that forgot the ids beyond its window still recognises a retry at the
    same place).

    :raises SequenceConflict: otherwise.
    :raises InvalidEvent: if they carry the ids with other content.
    """
    first = batch[0]
    if len(stored) == len(batch) and all(
        s.event_id == b.event_id for s, b in zip(stored, batch, strict=True)
    ):
        found = replay(batch, stored)
        assert found is not None
        return found
    raise SequenceConflict(first.session_id, first.branch_id, head + 1, first.sequence)


class StoreListener(Protocol):
    """What the store tells about commits (see :meth:`EventStore.add_listener`)."""

    def committed(self, records: Sequence[EventRecord]) -> None:
        """Records that just became visible, in position order; must not block."""


class EventStore(ABC):
    """An append-only, sequence-checked log of :class:`EventRecord` per session branch.

    Use it as an async context manager (``async with Backend(...) as store``) or
    call :meth:`open` and :meth:`close`; operations open the store on first use.
    """

    #: True when processes other than this one may append to the same data
    #: (their commits reach the listeners, see :meth:`add_listener`).
    shared_writers: ClassVar[bool] = False

    _opened: bool = False
    _closed: bool = False

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> Self:
        """Acquire what the backend needs (files, locks, connections).

        :raises StoreClosed: if the store was closed.
        :raises StoreLocked: (file store) if another writer holds the root.
        """
        if self._closed:
            raise StoreClosed()
        if not self._opened:
            await self._open()
            self._opened = True
        return self

    async def close(self) -> None:
        """Release everything; later calls raise :class:`StoreClosed`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._opened:
            await self._close()

    async def aclose(self) -> None:
        """Alias of :meth:`close`, for ``contextlib.aclosing`` and anyio habits."""
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self) -> None:
        if self._opened and not self._closed and self._needs_close():
            warnings.warn(f"{type(self).__name__} was never closed", ResourceWarning, stacklevel=2)

    def _needs_close(self) -> bool:
        """Whether an unclosed instance holds resources worth a ResourceWarning."""
        return True

    async def _ready(self) -> None:
        if self._closed:
            raise StoreClosed()
        if not self._opened:
            await self.open()

    # -- writes ----------------------------------------------------------------

    async def append(self, event: EventRecord) -> EventRecord:
        """Append one event at ``head + 1`` of its branch.

        Safe to retry after any failure: if a record with the event's
        ``event_id`` is already stored in the session (at any sequence) with the
        same branch, ``kind``, ``data`` and ``metadata``, that stored record is
        returned and nothing is written, whatever ``sequence`` and
        ``recorded_at`` the retry carries. Every backend recognises the ids of
        at least the last :data:`IDEMPOTENCY_WINDOW` records of each branch
        (memory and PostgreSQL: all of them).

        :raises SequenceConflict: if ``event.sequence != head + 1`` (and the
            event id is not stored).
        :raises BranchClosed: if the branch was closed or merged.
        :raises BranchNotFound: if the branch is not ``main`` and does not exist:
            only ``main`` comes into being by an append.
        :raises InvalidIdentifier: for a bad session or branch id.
        :raises InvalidEvent: for a bad kind, event id, sequence or payload, or
            an ``event_id`` the session already holds with other content.
        :raises StorageError: if the storage failed. The write may or may not
            have happened (a reply lost after the commit looks the same): retry
            with the same ``event_id`` to find out, which is always safe.
        :raises StoreClosed: after :meth:`close`.
        """
        check_event(event)
        # _ready() inlined: this is the hot path of every backend.
        if self._closed:
            raise StoreClosed()
        if not self._opened:
            await self.open()
        return await self._append(event)

    async def append_batch(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Append contiguous events of one session and branch, all or nothing.

        Retries as :meth:`append` does, batch by batch: if every event id of the
        batch is stored with the same content, the stored records are returned.

        :raises SequenceConflict: if the first sequence is not ``head + 1``.
        :raises InvalidEvent: for an empty, mixed or non-contiguous batch, one
            whose ids are stored only in part, or one with other content.
        :raises BranchClosed, BranchNotFound, InvalidIdentifier, StorageError, StoreClosed:
            as :meth:`append`.
        """
        batch = check_batch(events)
        await self._ready()
        return await self._append_batch(batch)

    async def append_next(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Append events of one session and branch at the branch's next sequences.

        Their ``sequence`` fields are ignored: the store numbers them ``head + 1``
        onwards at the moment it accepts the write, so concurrent calls on one
        branch never conflict with each other (the file store also shares its
        group-commit rounds between them). All or nothing, like
        :meth:`append_batch`; retried ids are recognised as :meth:`append` does:
        if every event id is stored with the same content, the stored records
        are returned and nothing is written.

        :returns: the stored records, with their sequences and positions.
        :raises InvalidEvent: for an empty or mixed batch, a repeated event id, a
            bad kind, id or payload, or ids stored in part or with other content.
        :raises BranchClosed, InvalidIdentifier, StorageError, StoreClosed: as :meth:`append`.
        """
        batch = check_next_batch(events)
        await self._ready()
        return await self._append_next(batch)

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
        :raises BranchClosed: if ``from_branch`` was closed or merged.
        :raises InvalidBranchOperation: if ``fork_sequence`` is outside ``0..head``.
        :raises InvalidIdentifier: for a bad id.
        """
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        check_identifier(from_branch, "from_branch")
        if fork_sequence is not None:
            try:
                check_sequence_arg(fork_sequence, "fork_sequence", 0)
            except ValueError as exc:
                raise InvalidBranchOperation(session_id, branch_id, str(exc)) from None
        await self._ready()
        return await self._create_branch(session_id, branch_id, from_branch, fork_sequence)

    async def merge_branch(
        self, session_id: str, source_branch: str, target_branch: str
    ) -> MergeResult:
        """Append the source's own events to the target in one batch and close the source.

        :raises BranchNotFound: if either branch does not exist.
        :raises BranchClosed: if either branch was already closed or merged.
        :raises InvalidBranchOperation: for a merge into itself or a descendant.
        :raises InvalidIdentifier: for a bad id.
        """
        check_identifier(session_id, "session_id")
        check_identifier(source_branch, "source_branch")
        check_identifier(target_branch, "target_branch")
        await self._ready()
        return await self._merge_branch(session_id, source_branch, target_branch)

    # -- lifecycle of sessions and branches --------------------------------------

    async def close_branch(self, session_id: str, branch_id: str = MAIN) -> BranchInfo:
        """Close a branch: it takes no more appends and no forks; its history stays.

        Closing ``main`` is how a run says it is finished. Closing a closed (or
        merged) branch changes nothing and returns its info. ``main`` always
        exists: closing it in an unknown session creates the session, empty and
        closed, so a run that ends before its first event can say so too.

        :raises BranchNotFound: if the branch is not ``main`` and does not exist.
        :raises InvalidIdentifier: for a bad id.
        :raises StorageError: if the storage failed.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        await self._ready()
        return await self._close_branch(session_id, branch_id)

    async def delete_session(self, session_id: str) -> bool:
        """Erase the session: every branch, record and piece of metadata.

        Afterwards nothing of it is left in the store: ``read`` returns ``[]``,
        ``head`` 0, and the id may be used again from sequence 1. A crash during
        the delete leaves the session whole or gone, never half. Waits for the
        session's writes in progress (a pending merge included).

        Consumers' dead letters naming the session go too (their error messages
        may quote its payloads): on PostgreSQL in the same transaction, elsewhere
        right after (a crash in between leaves them; deleting again removes them).

        :returns: ``True`` if the session existed, ``False`` (a no-op) if not.
        :raises InvalidIdentifier: for a bad id.
        :raises StorageError: if the storage failed; the session is then whole or gone.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(session_id, "session_id")
        await self._ready()
        deleted = await self._delete_session(session_id)
        await self._forget_dead_letters(session_id)
        return deleted

    async def _forget_dead_letters(self, session_id: str) -> None:
        for info in await self._consumers():
            if info.dead_letters:
                state = await self._consumer_state(info.name)
                letters = await state.dead_letters()
                gone = {d.position for d in letters if d.session_id == session_id}
                await state.remove_dead_letters(gone)

    async def delete_branch(self, session_id: str, branch_id: str) -> None:
        """Erase one branch and its own records; records merged from it elsewhere stay.

        :raises BranchNotFound: if the branch does not exist.
        :raises InvalidBranchOperation: for ``main`` (it goes only with its
            session, see :meth:`delete_session`) or a branch that others fork from.
        :raises InvalidIdentifier: for a bad id.
        :raises StorageError: if the storage failed.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        if branch_id == MAIN:
            raise InvalidBranchOperation(
                session_id, branch_id, "main goes only with its session: use delete_session"
            )
        await self._ready()
        await self._delete_branch(session_id, branch_id)

    async def sessions(
        self,
        *,
        prefix: str | None = None,
        active_after: datetime | None = None,
        active_before: datetime | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[SessionInfo]:
        """Sessions with their size and activity, ordered by id.

        :param prefix: only ids that start with it.
        :param active_after: only sessions whose last activity is at or after it.
        :param active_before: only sessions whose last activity is before it.
        :param limit: at most this many.
        :param after: only ids after it: the last id of the previous page.
        :raises TypeError: for a non-string prefix or a bound that is not a datetime.
        :raises ValueError: for a naive datetime or a negative limit.
        :raises InvalidIdentifier: for a bad ``after``.
        :raises StorageError: if the storage failed.
        :raises StoreClosed: after :meth:`close`.
        """
        query = check_sessions_query(prefix, active_after, active_before, limit, after)
        await self._ready()
        if query[3] == 0:
            return []
        return await self._sessions(query)

    async def expire(self, *, idle_for: timedelta) -> list[str]:
        """Delete every session whose last activity is older than ``idle_for``.

        Lists with :meth:`sessions` and deletes with :meth:`delete_session`, page
        by page; a session written to while this runs may still be deleted if
        it was idle when listed.

        :returns: the deleted ids, sorted.
        :raises TypeError: if ``idle_for`` is not a timedelta.
        :raises ValueError: if it is negative.
        :raises StorageError: if the storage failed (sessions deleted so far stay deleted).
        :raises StoreClosed: after :meth:`close`.
        """
        cutoff = utc_now() - check_idle_for(idle_for)
        deleted: list[str] = []
        last: str | None = None
        while True:
            page = await self.sessions(active_before=cutoff, limit=PAGE_SIZE, after=last)
            for info in page:
                if await self.delete_session(info.session_id):
                    deleted.append(info.session_id)  # noqa: PERF401 - awaits in the loop
            if len(page) < PAGE_SIZE:
                return deleted
            last = page[-1].session_id

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

        Unknown sessions and branches read as ``[]``.

        :raises InvalidIdentifier: for a bad id.
        :raises ValueError: for a negative bound or limit.
        """
        window = await self._window(session_id, branch_id, from_sequence, to_sequence, limit)
        if window is None:
            return []
        return await self._read(session_id, branch_id, *window)

    async def _window(
        self,
        session_id: str,
        branch_id: str,
        from_sequence: object,
        to_sequence: object,
        limit: object,
    ) -> tuple[int, int | None, int | None] | None:
        """Validated ``(start, end, limit)`` of a read, or ``None`` if it is empty."""
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        start, end, cap = check_range(from_sequence, to_sequence, limit)
        await self._ready()
        if cap == 0 or (end is not None and end < start):
            return None
        return start, end, cap

    async def get_event(self, session_id: str, event_id: str) -> EventRecord | None:
        """The record the session holds with ``event_id``, on any of its branches.

        The stored record, as :meth:`read` returns it (a fork's inherited
        records keep the branch that wrote them); ``None`` for an unknown
        session or id. Costs about one lookup, not a scan of the session (the
        file store builds a per-session index on first use and keeps it current).

        :raises InvalidIdentifier: for a bad session id.
        :raises TypeError: if ``event_id`` is not a str.
        :raises ValueError: for an event id no record can carry (empty, over 128
            characters, NUL).
        :raises StorageError: if the storage failed.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(session_id, "session_id")
        check_event_id_arg(event_id)
        await self._ready()
        return await self._get_event(session_id, event_id)

    async def get_by_key(self, session_id: str, key: str) -> EventRecord | None:
        """The last written record of the session whose ``metadata["key"] == key``.

        ``key`` is a string the writer chose (a checkpoint id, a framework's
        event id...); records whose ``metadata["key"]`` is not a str are never
        found. Every branch counts; if several records carry the key, the one
        written last (highest feed position) wins. ``None`` if none does. Costs
        about one lookup, as :meth:`get_event`.

        :raises InvalidIdentifier: for a bad session id.
        :raises TypeError: if ``key`` is not a str.
        :raises ValueError: for an empty key or one holding NUL or a lone surrogate.
        :raises StorageError: if the storage failed.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(session_id, "session_id")
        check_key_arg(key)
        await self._ready()
        return await self._get_by_key(session_id, key)

    async def read_last(
        self,
        session_id: str,
        branch_id: str = MAIN,
        *,
        kinds: Iterable[str] | None = None,
        limit: int = 1,
        to_sequence: int | None = None,
    ) -> list[EventRecord]:
        """The last ``limit`` records of the branch's logical history, newest first.

        Only records with ``sequence <= to_sequence`` (default: the head) whose
        ``kind`` is in ``kinds`` (default: every kind) count; a fork's inherited
        records included. Unknown sessions and branches read as ``[]``. Costs
        O(records scanned backwards), not O(history).

        :raises InvalidIdentifier: for a bad id.
        :raises ValueError: for a negative or non-int ``limit`` or ``to_sequence``.
        :raises TypeError: for ``kinds`` not an iterable of str.
        :raises StorageError: if the storage failed.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        kind_set = check_kinds(kinds)
        cap = check_sequence_arg(limit, "limit", 0)
        end = None if to_sequence is None else check_sequence_arg(to_sequence, "to_sequence", 0)
        await self._ready()
        if cap == 0 or end == 0 or kind_set == frozenset():
            return []
        return await self._read_last(session_id, branch_id, kind_set, cap, end)

    async def read_at(
        self, session_id: str, branch_id: str, sequences: Iterable[int]
    ) -> list[EventRecord | None]:
        """The records at ``sequences`` of the branch's logical history, in the order asked.

        ``None`` where there is none (sequence 0, beyond the head, an unknown
        session or branch). One pass over the branch, not one read per item; a
        sequence asked twice gives the same record object twice.

        :raises InvalidIdentifier: for a bad id.
        :raises TypeError: if ``sequences`` is not an iterable (or is a str).
        :raises ValueError: for an item that is not an int in ``0..2**63-1``.
        :raises StorageError: if the storage failed.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        asked = check_sequences(sequences)
        await self._ready()
        wanted = sorted({s for s in asked if s > 0})
        found = await self._read_at(session_id, branch_id, wanted) if wanted else {}
        return [found.get(s) for s in asked]

    async def copy_session(
        self,
        source_session: str,
        target_session: str,
        *,
        branch_id: str | None = None,
        to_sequence: int | None = None,
    ) -> list[BranchInfo]:
        """Fork ``source_session`` into the new session ``target_session``, all or nothing.

        With ``branch_id=None`` every branch is copied with its lineage (parent,
        fork point, closed or merged state) and its own records. With
        ``branch_id``, the target's ``main`` is that branch's logical history up
        to ``to_sequence`` (default: its head), inherited records included.

        The copies keep ``event_id``, ``kind``, ``data``, ``metadata`` and
        ``recorded_at``, with ``session_id=target_session`` and the source's
        ``branch_id`` (``main`` in the single-branch form). They are new commits
        of the target: new feed positions, in the order the source wrote them (so
        :meth:`get_by_key` finds the same record), seen by listeners and subscribers.
        The target's branches are created now (``created_at``), so
        :meth:`expire` counts the copy as fresh activity.

        The records are copied, never shared: deleting or expiring the source
        later leaves the target whole.

        :returns: the target's branches, sorted by id.
        :raises BranchExists: ``(target_session, "main")`` if the target session exists.
        :raises BranchNotFound: for an unknown source branch, or an unknown source
            session (nothing to copy).
        :raises InvalidBranchOperation: if ``to_sequence`` is beyond the branch's head,
            or (PostgreSQL) the copy holds ``2**20`` records or more.
        :raises InvalidEvent: (file store) if a copied record, under its new session
            id, exceeds ``max_record_size``.
        :raises InvalidIdentifier: for a bad id.
        :raises ValueError: for a bad ``to_sequence``, or one given without ``branch_id``.
        :raises StorageError: if the storage failed; the target is then absent.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(source_session, "source_session")
        check_identifier(target_session, "target_session")
        if branch_id is not None:
            check_identifier(branch_id, "branch_id")
        if to_sequence is not None:
            check_sequence_arg(to_sequence, "to_sequence", 0)
            if branch_id is None:
                raise ValueError("to_sequence needs a branch_id: the branch to copy up to it")
        await self._ready()
        return await self._copy_session(source_session, target_session, branch_id, to_sequence)

    async def _copy_plan(
        self, source: str, target: str, branch_id: str | None, to_sequence: int | None
    ) -> list[BranchInfo]:
        """The source branches a copy takes, checked: parents first.

        For the single-branch form, one :class:`BranchInfo` of the source branch
        whose ``head`` is the copy's last sequence.

        :raises BranchExists, BranchNotFound, InvalidBranchOperation: as
            :meth:`copy_session`.
        """
        if await self._list_branches(target):
            raise BranchExists(target, MAIN)
        branches = await self._list_branches(source)
        if branch_id is None:
            if not branches:
                raise BranchNotFound(source, MAIN)
            by_id = {info.branch_id: info for info in branches}
            return [by_id[name] for name in parents_first(branches)]
        found = [info for info in branches if info.branch_id == branch_id]
        if not found:
            raise BranchNotFound(source, branch_id)
        info = found[0]
        if to_sequence is not None:
            if to_sequence > info.head:
                raise InvalidBranchOperation(
                    source,
                    branch_id,
                    f"to_sequence {to_sequence} is beyond the head {info.head} of {branch_id!r}",
                )
            info = msgspec.structs.replace(info, head=to_sequence)
        return [info]

    async def iter_events(
        self,
        session_id: str,
        branch_id: str = MAIN,
        from_sequence: int = 1,
        limit: int | None = None,
        *,
        to_sequence: int | None = None,
    ) -> AsyncIterator[EventRecord]:
        """Like :meth:`read`, streamed in pages without holding the history in memory."""
        window = await self._window(session_id, branch_id, from_sequence, to_sequence, limit)
        if window is None:
            return
        async for event in self._iter_events(session_id, branch_id, *window):
            yield event

    async def head(self, session_id: str, branch_id: str = MAIN) -> int:
        """The last sequence of the branch, 0 if it has none.

        :raises InvalidIdentifier: for a bad id.
        """
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        await self._ready()
        return await self._head(session_id, branch_id)

    async def list_branches(self, session_id: str) -> list[BranchInfo]:
        """Every branch of the session, sorted by id; ``[]`` for an unknown session."""
        check_identifier(session_id, "session_id")
        await self._ready()
        return await self._list_branches(session_id)

    async def branch_info(self, session_id: str, branch_id: str = MAIN) -> BranchInfo:
        """Parent, fork point, head, creation time and merge state of a branch.

        :raises BranchNotFound: if the branch does not exist (``main`` always does).
        :raises InvalidIdentifier: for a bad id.
        """
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        await self._ready()
        return await self._branch_info(session_id, branch_id)

    async def list_sessions(self) -> list[str]:
        """Every session id, sorted."""
        await self._ready()
        return await self._list_sessions()

    async def read_feed(
        self,
        after: int = 0,
        limit: int | None = None,
        *,
        kinds: Iterable[str] | None = None,
        session_ids: Iterable[str] | None = None,
    ) -> list[EventRecord]:
        """Stored records of every session and branch with ``position > after``, ascending.

        A reader polling ``read_feed(after=<last position seen>)`` while writers
        commit never skips a record: none becomes visible with a position below
        one already returned. Costs O(records returned), not O(store size).

        :raises ValueError: for a negative or non-int ``after`` or ``limit``.
        :raises TypeError: for ``kinds``/``session_ids`` not an iterable of str.
        :raises InvalidIdentifier: for a bad id in ``session_ids``.
        :raises StoreClosed: after :meth:`close`.
        """
        start, cap, kind_set, session_set = check_feed_args(after, limit, kinds, session_ids)
        await self._ready()
        if cap == 0 or kind_set == frozenset() or session_set == frozenset():
            return []
        return await self._read_feed(start, cap, kind_set, session_set)

    async def feed_head(self) -> int:
        """The highest visible position, 0 for an empty store.

        :raises StoreClosed: after :meth:`close`.
        """
        await self._ready()
        return await self._feed_head()

    async def consumer_state(self, name: str) -> ConsumerState:
        """The durable state (checkpoint, dead letters, lease) of the consumer ``name``.

        What ``journal.consumer`` keeps in the store; created empty on first use.
        The memory store keeps it in memory, the file store under
        ``<root>/.consumers/`` (writable from a ``read_only`` store), PostgreSQL in
        its ``consumers`` and ``dead_letters`` tables. A backend that does not
        override :meth:`_consumer_state` keeps it in this process's memory.

        :raises InvalidIdentifier: for a bad name.
        :raises StorageError: if the state cannot be opened.
        :raises StoreClosed: after :meth:`close`.
        """
        check_identifier(name, "name")
        await self._ready()
        return await self._consumer_state(name)

    async def consumers(self) -> list[ConsumerInfo]:
        """Every consumer with state in this store, by name.

        :raises StorageError: if the state cannot be read.
        :raises StoreClosed: after :meth:`close`.
        """
        await self._ready()
        return await self._consumers()

    def add_listener(self, listener: StoreListener) -> Callable[[], None]:
        """Be told of every commit: this process's and, where the backend can
        see them, other processes' (a read-only file store following the
        writer; PostgreSQL's notifications). Returns the function that removes it.

        ``listener.committed(records)`` runs on the event loop, once per commit
        or committed range, in position order, before the writing call returns.
        """
        listeners = self.__dict__.setdefault("_listeners", [])
        listeners.append(listener)
        if len(listeners) == 1:
            self._listening(True)

        def remove() -> None:
            if listener in listeners:
                listeners.remove(listener)
                if not listeners:
                    self._listening(False)

        return remove

    def _committed(self, records: Sequence[EventRecord]) -> None:
        """Backends call this once per commit, in position order (see :meth:`add_listener`)."""
        for listener in tuple(self.__dict__.get("_listeners", ())):
            listener.committed(records)

    def _listening(self, on: bool) -> None:  # noqa: B027 - optional hook
        """Hook: the first listener arrived (``True``) or the last left (``False``)."""

    async def listening(self) -> None:
        """Return once commits of other processes reach the listeners.

        A store that sees other processes' commits (PostgreSQL, a read-only file
        store) starts following them when the first listener arrives; awaiting
        this before reading a backlog makes sure nothing committed in between is
        missed. Stores without other writers return at once.

        :raises StoreClosed: after :meth:`close`.
        """
        await self._ready()

    # -- backend hooks ---------------------------------------------------------

    async def _consumer_state(self, name: str) -> ConsumerState:
        """Hook: the state of consumer ``name`` (default: kept in this process's memory)."""
        states: dict[str, ConsumerState] = self.__dict__.setdefault("_consumer_states", {})
        if name not in states:
            states[name] = MemoryConsumerState(name)
        return states[name]

    async def _consumers(self) -> list[ConsumerInfo]:
        """Hook: every consumer's info, by name (default: those of :meth:`_consumer_state`)."""
        states: dict[str, ConsumerState] = self.__dict__.get("_consumer_states", {})
        return [await states[name].info() for name in sorted(states)]

    async def _open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources; called once, before the first operation."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once."""

    async def _append(self, event: EventRecord) -> EventRecord:
        return (await self._append_batch([event]))[0]

    @abstractmethod
    async def _append_batch(self, events: list[EventRecord]) -> list[EventRecord]:
        """Store a validated batch atomically, or raise.

        First :func:`replay` against the records stored under the batch's event
        ids; then the sequence check, with :func:`resolve_retry` when it fails.
        """

    async def _append_next(self, events: list[EventRecord]) -> list[EventRecord]:
        """Store a validated batch (numbered ``1..n``) at ``head + 1..``.

        This default reads the head and appends there, again on a
        :class:`SequenceConflict` (another writer got there first); a backend
        that can number at acceptance overrides it.
        """
        first = events[0]
        replace = msgspec.structs.replace
        while True:
            head = await self._head(first.session_id, first.branch_id)
            batch = [replace(event, sequence=head + event.sequence) for event in events]
            try:
                return await self._append_batch(batch)
            except SequenceConflict:
                continue

    @abstractmethod
    async def _read(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> list[EventRecord]:
        """Read the logical history; ``start >= 1`` and ``limit != 0`` are guaranteed."""

    async def _iter_events(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> AsyncIterator[EventRecord]:
        remaining = limit
        while remaining is None or remaining > 0:
            size = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
            page = await self._read(session_id, branch_id, start, end, size)
            for event in page:
                yield event
            if len(page) < size:
                return
            start = page[-1].sequence + 1
            if remaining is not None:
                remaining -= len(page)

    @abstractmethod
    async def _head(self, session_id: str, branch_id: str) -> int: ...

    # The lookups' defaults scan with ``_read``; every bundled backend overrides them.

    async def _own_records(self, session_id: str) -> list[EventRecord]:
        out: list[EventRecord] = []
        for info in await self._list_branches(session_id):
            out.extend(
                await self._read(session_id, info.branch_id, info.fork_sequence + 1, None, None)
            )
        return out

    async def _get_event(self, session_id: str, event_id: str) -> EventRecord | None:
        """Hook: the record with ``event_id`` in the session, or ``None``."""
        for record in await self._own_records(session_id):
            if record.event_id == event_id:
                return record
        return None

    async def _get_by_key(self, session_id: str, key: str) -> EventRecord | None:
        """Hook: the highest-positioned record with ``metadata["key"] == key``, or ``None``."""
        hits = [r for r in await self._own_records(session_id) if r.metadata.get("key") == key]
        return max(hits, key=lambda r: r.position, default=None)

    async def _read_last(
        self,
        session_id: str,
        branch_id: str,
        kinds: frozenset[str] | None,
        limit: int,
        end: int | None,
    ) -> list[EventRecord]:
        """Hook: :meth:`read_last`; ``limit >= 1``, ``end`` None or >= 1, kinds non-empty."""
        records = await self._read(session_id, branch_id, 1, end, None)
        out = [r for r in reversed(records) if kinds is None or r.kind in kinds]
        return out[:limit]

    async def _read_at(
        self, session_id: str, branch_id: str, sequences: list[int]
    ) -> dict[int, EventRecord]:
        """Hook: the records at ``sequences`` (sorted, unique, >= 1) that exist, by sequence."""
        records = await self._read(session_id, branch_id, sequences[0], sequences[-1], None)
        wanted = set(sequences)
        return {r.sequence: r for r in records if r.sequence in wanted}

    async def _copy_session(
        self, source: str, target: str, branch_id: str | None, to_sequence: int | None
    ) -> list[BranchInfo]:
        """Hook: :meth:`copy_session`, atomic, raising as it documents."""
        raise NotImplementedError(f"{type(self).__name__} cannot copy sessions")

    @abstractmethod
    async def _create_branch(
        self, session_id: str, branch_id: str, from_branch: str, fork_sequence: int | None
    ) -> BranchInfo: ...

    @abstractmethod
    async def _merge_branch(
        self, session_id: str, source_branch: str, target_branch: str
    ) -> MergeResult: ...

    @abstractmethod
    async def _list_branches(self, session_id: str) -> list[BranchInfo]: ...

    @abstractmethod
    async def _branch_info(self, session_id: str, branch_id: str) -> BranchInfo: ...

    @abstractmethod
    async def _list_sessions(self) -> list[str]: ...

    async def _close_branch(self, session_id: str, branch_id: str) -> BranchInfo:
        """Mark the branch closed (idempotent) and return its info."""
        raise NotImplementedError(f"{type(self).__name__} cannot close branches")

    async def _delete_session(self, session_id: str) -> bool:
        """Erase the session, crash-safe; ``False`` if it does not exist."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete sessions")

    async def _delete_branch(self, session_id: str, branch_id: str) -> None:
        """Erase a non-main branch, raising as :meth:`delete_branch` documents."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete branches")

    async def _sessions(self, query: SessionQuery) -> list[SessionInfo]:
        """A page of :meth:`sessions`; ``limit != 0``, ``prefix`` is non-empty or None."""
        raise NotImplementedError(f"{type(self).__name__} cannot list sessions with their info")

    @abstractmethod
    async def _read_feed(
        self,
        after: int,
        limit: int | None,
        kinds: frozenset[str] | None,
        session_ids: frozenset[str] | None,
    ) -> list[EventRecord]:
        """Feed records after ``after``; ``limit != 0`` and non-empty filters guaranteed."""

    @abstractmethod
    async def _feed_head(self) -> int: ...

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "unopened"
        return f"<{type(self).__name__} {state}>"
