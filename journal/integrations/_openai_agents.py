"""An OpenAI Agents SDK ``Session`` whose history is an eventjournal session.

Every conversation item is one event (kind ``item``). Nothing is ever
rewritten: :meth:`JournalSession.pop_item` appends an ``item_popped`` tombstone
and :meth:`JournalSession.clear_session` a ``cleared`` marker, so the journal
keeps the whole conversation, popped turns included, for replay and audit.

The live items form a stack, and each record carries the pointers that let
a reader walk it without replaying the session:

- ``item``: ``metadata["below"]``, the live item under it (0 for none);
- ``item_popped``: ``data["sequence"]`` and ``data["event_id"]`` of the item
  it removed, ``metadata["top"]``, the live item left on top;
- every record: ``metadata["epoch"]``, the sequence of the last ``cleared``
  marker (0 for none); a ``cleared`` record's epoch is its own sequence.

So the last record alone gives the top of the stack and where the
conversation starts; ``get_items(limit=n)`` reads about ``n`` records back
from the head, ``pop_item`` at most two, ``add_items`` none (it writes at the
head it last saw, optimistically, and re-reads only if another writer moved it);
records a session object has read or written are not read again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from agents.memory import SessionSettings
from agents.memory.session_settings import resolve_session_limit

from eventstore import MAIN, EventRecord, InvalidEvent, SequenceConflict, is_valid_identifier

from ._identifiers import component

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

    from journal import EventJournal

__all__ = ("JournalSession",)

#: Event kinds a session writes.
ITEM = "item"
POPPED = "item_popped"
CLEARED = "cleared"


class _Tip(NamedTuple):
    """Where the session stands after its last record."""

    head: int  # the last sequence of the branch, 0 for none
    top: int  # the sequence of the live item on top, 0 for an empty stack
    epoch: int  # the sequence of the last ``cleared`` marker, 0 for none


_EMPTY = _Tip(0, 0, 0)

#: Records a session object keeps in memory (it drops the oldest half beyond).
_KNOWN_MAX = 2048


def _tip(record: EventRecord | None) -> _Tip:
    if record is None:
        return _EMPTY
    if record.kind == CLEARED:
        return _Tip(record.sequence, 0, record.sequence)
    epoch = int(record.metadata.get("epoch", 0))
    if record.kind == POPPED:
        return _Tip(record.sequence, int(record.metadata["top"]), epoch)
    return _Tip(record.sequence, record.sequence, epoch)


def journal_session_id(session_id: str) -> str:
    """The eventjournal session holding the SDK session ``session_id``.

    A valid eventjournal identifier is used as it is; any other string maps to
    ``oa.`` and a hash of it (the original is in each record's metadata).
    """
    return session_id if is_valid_identifier(session_id) else "oa." + component(session_id)


class JournalSession:
    """The OpenAI Agents SDK ``Session`` protocol over an :class:`~journal.EventJournal`.

    ``JournalSession("chat-42", journal)`` keeps the conversation in the
    eventjournal session ``chat-42`` (see :func:`journal_session_id` for ids
    that are not valid identifiers), on ``branch_id`` (``main`` by default; a
    branch made with :meth:`~journal.EventJournal.create_branch` continues a
    forked conversation). Any number of instances, in any number of processes
    sharing the store, may serve one session: writes are checked against the
    head, and every call starts from the store's current head.

    An instance remembers the last records it read or wrote (records never
    change once stored), so a call whose records it knows costs one
    :meth:`~journal.EventJournal.head`. The one thing this cannot notice is a
    :meth:`~journal.EventJournal.delete_session` followed by a rewrite to at
    least the old length between two calls: after deleting a session, make new
    ``JournalSession`` objects for it.

    ``clear_session`` and ``pop_item`` are append-only (see the module
    docstring); to erase a conversation for good, use
    :meth:`~journal.EventJournal.delete_session`.
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        journal: EventJournal,
        *,
        branch_id: str = MAIN,
        session_settings: SessionSettings | None = None,
    ) -> None:
        self.session_id = session_id
        self.journal = journal
        self.branch_id = branch_id
        self.session_settings = session_settings if session_settings else SessionSettings()
        #: The eventjournal session the items are stored in.
        self.journal_session_id = journal_session_id(session_id)
        self._origin = None if self.journal_session_id == session_id else session_id
        self._tip: _Tip | None = None
        self._known: dict[int, EventRecord] = {}

    def __repr__(self) -> str:
        return f"JournalSession({self.session_id!r}, branch_id={self.branch_id!r})"

    # -- reads -------------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The live items, oldest first; with ``limit``, only the last ``limit`` of them.

        ``limit=None`` falls back to ``session_settings.limit``; ``0`` gives
        ``[]`` and a negative limit every item (as the SDK's ``SQLiteSession``).

        :raises StorageError: if the store failed.
        :raises StoreClosed: if the journal is closed.
        """
        limit = resolve_session_limit(limit, self.session_settings)
        if limit == 0:
            return []
        if limit is None or limit < 0:
            return await self._all_items()
        return await self._last_items(limit)

    async def _all_items(self) -> list[TResponseInputItem]:
        tip = await self._load_tip()
        wanted = range(tip.epoch + 1, tip.head + 1)
        if all(sequence in self._known for sequence in wanted):
            records = [self._known[sequence] for sequence in wanted]
        else:
            records = await self.journal.read(
                self.journal_session_id, self.branch_id, tip.epoch + 1, to_sequence=tip.head
            )
        stack: list[Any] = []
        for record in records:
            if record.kind == ITEM:
                stack.append(record.data)
            elif record.kind == POPPED:
                stack.pop()
        return stack

    async def _last_items(self, limit: int) -> list[TResponseInputItem]:
        # The live items are the chain top -> below -> below...; without pops it
        # is contiguous and one read_last of ``limit`` records covers it.
        tip = await self._load_tip(limit)
        found: list[Any] = []
        wanted = tip.top
        while wanted and len(found) < limit:
            record = self._known.get(wanted)
            if record is None:
                record = await self._fetch(wanted, limit - len(found))
            found.append(record.data)
            wanted = int(record.metadata["below"])
        found.reverse()
        return found

    async def _fetch(self, sequence: int, limit: int) -> EventRecord:
        """Read ``limit`` records back from ``sequence``, remembered; the one at ``sequence``."""
        block = await self.journal.read_last(
            self.journal_session_id, self.branch_id, limit=limit, to_sequence=sequence
        )
        if not block or block[0].sequence != sequence:
            raise InvalidEvent(f"session {self.journal_session_id!r}: no record at {sequence}")
        self._remember(block)
        return block[0]

    def _remember(self, records: Iterable[EventRecord]) -> None:
        known = self._known
        known.update((record.sequence, record) for record in records)
        if len(known) > _KNOWN_MAX:
            for sequence in sorted(known)[: len(known) - _KNOWN_MAX // 2]:
                del known[sequence]

    async def _load_tip(self, limit: int = 1) -> _Tip:
        head = await self.journal.head(self.journal_session_id, self.branch_id)
        if self._tip is not None and head < self._tip.head:
            self._known.clear()  # the session was deleted: nothing known holds
        if not head:
            tip = _EMPTY
        elif self._tip is not None and self._tip.head == head:
            tip = self._tip
        else:
            record = self._known.get(head)
            tip = _tip(record if record is not None else await self._fetch(head, limit))
        self._tip = tip
        return tip

    # -- writes ------------------------------------------------------------------

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` as one atomic batch of ``item`` events.

        :raises InvalidEvent: for an item that is not plain JSON (nothing is written).
        :raises BranchClosed: if the session's branch was closed or merged.
        :raises StorageError: if the store failed; the batch was written whole or not at all.
        :raises StoreClosed: if the journal is closed.
        """
        if not items:
            return
        # Written at the head last seen: a conflict means another writer moved it.
        tip = self._tip if self._tip is not None else await self._load_tip()
        while True:
            records = self._item_records(tip, items)
            try:
                stored = await self.journal.append_batch(records)
            except SequenceConflict:
                tip = await self._load_tip()
                continue
            self._wrote(stored, _Tip(stored[-1].sequence, stored[-1].sequence, tip.epoch))
            return

    def _wrote(self, records: list[EventRecord], tip: _Tip) -> None:
        self._remember(records)
        self._tip = tip

    def _item_records(self, tip: _Tip, items: Sequence[Any]) -> list[EventRecord]:
        records = []
        below = tip.top
        for sequence, item in enumerate(items, tip.head + 1):
            records.append(self._record(sequence, ITEM, item, epoch=tip.epoch, below=below))
            below = sequence
        return records

    def _record(self, sequence: int, kind: str, data: Any, **metadata: Any) -> EventRecord:
        if self._origin is not None:
            metadata["openai_session_id"] = self._origin
        return EventRecord.new(
            self.journal_session_id, self.branch_id, sequence, kind, data, metadata=metadata
        )

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the most recent live item and return it; ``None`` if there is none.

        The item stays in the journal; an ``item_popped`` event records its removal.

        :raises BranchClosed: if the session's branch was closed or merged.
        :raises StorageError: if the store failed.
        :raises StoreClosed: if the journal is closed.
        """
        while True:
            tip = await self._load_tip()
            if not tip.top:
                return None
            item = self._known.get(tip.top) or await self._fetch(tip.top, 1)
            below = int(item.metadata["below"])
            data = {"sequence": item.sequence, "event_id": item.event_id}
            marker = self._record(tip.head + 1, POPPED, data, epoch=tip.epoch, top=below)
            try:
                stored = await self.journal.append(marker)
            except SequenceConflict:
                continue
            self._wrote([stored], _Tip(stored.sequence, below, tip.epoch))
            return item.data  # type: ignore[no-any-return]

    async def clear_session(self) -> None:
        """Forget every item: a ``cleared`` marker starts the conversation afresh.

        Nothing is written when no item is live.

        :raises BranchClosed: if the session's branch was closed or merged.
        :raises StorageError: if the store failed.
        :raises StoreClosed: if the journal is closed.
        """
        while True:
            tip = await self._load_tip()
            if not tip.top:
                return
            marker = self._record(tip.head + 1, CLEARED, None)
            try:
                stored = await self.journal.append(marker)
            except SequenceConflict:
                continue
            self._wrote([stored], _Tip(stored.sequence, 0, stored.sequence))
            return
