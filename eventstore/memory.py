"""``MemoryEventStore``: the whole contract in a process's memory.

The reference backend: fast, deterministic, nothing persisted. Every operation
runs without awaiting in between, so each one is atomic on the event loop.

Like the file store, it keeps its own copy of what it stores (a
:class:`~eventstore._snapshot.Snapshot`) and hands out new records on every
read, so neither the caller of ``append`` nor any reader can change history by
mutating a payload.

Positions count up from 1 in the order writes are accepted, which is also the
order they commit and become visible; the feed is one list in that order, so
``read_feed`` finds its start by bisection and costs O(records returned)
(filters aside: filtered-out records are skipped, not indexed).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec

from ._base import EventStore, replay, resolve_retry
from ._errors import (
    BranchClosed,
    BranchExists,
    BranchNotFound,
    InvalidBranchOperation,
    StoreClosed,
)
from ._fields import check_fields
from ._ids import MAIN
from ._lineage import check_merge, merged_records, segments
from ._records import BranchInfo, EventRecord, MergeResult, SessionInfo, utc_now
from ._snapshot import _SCALARS, Snapshot
from ._validate import SessionQuery, check_event

__all__ = ("MemoryEventStore",)


class _Branch:
    __slots__ = (
        "closed_at",
        "created_at",
        "events",
        "fork_sequence",
        "merged_into",
        "parent_branch",
    )

    def __init__(self, parent_branch: str | None, fork_sequence: int) -> None:
        self.parent_branch = parent_branch
        self.fork_sequence = fork_sequence
        self.created_at = utc_now()
        self.merged_into: str | None = None
        self.closed_at: datetime | None = None
        self.events: list[Snapshot] = []

    @property
    def head(self) -> int:
        return self.fork_sequence + len(self.events)

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def check_open(self, session_id: str, branch_id: str) -> None:
        """:raises BranchClosed: if the branch was closed or merged."""
        if self.closed_at is not None:
            raise BranchClosed(session_id, branch_id, self.merged_into)

    def last_activity(self) -> datetime:
        moments = [self.created_at]
        if self.events:
            moments.append(self.events[-1].recorded_at)
        if self.closed_at is not None:
            moments.append(self.closed_at)
        return max(moments)

    def info(self, session_id: str, branch_id: str) -> BranchInfo:
        return BranchInfo(
            session_id=session_id,
            branch_id=branch_id,
            parent_branch=self.parent_branch,
            fork_sequence=self.fork_sequence,
            head=self.head,
            created_at=self.created_at,
            merged_into=self.merged_into,
            closed=self.closed_at is not None,
        )


class _Session(dict[str, _Branch]):
    """A session's branches by id, with one index of its event ids for all of them."""

    __slots__ = ("by_key", "ids")

    def __init__(self) -> None:
        super().__init__()
        #: event id -> its stored record. Ids are unique in a session, so one
        #: lookup answers for every branch (the idempotent-retry rule's question).
        self.ids: dict[str, Snapshot] = {}
        #: ``metadata["key"]`` (a str) -> the last record written with it.
        self.by_key: dict[str, Snapshot] = {}

    def index_keys(self, records: Sequence[EventRecord], kept: Sequence[Snapshot]) -> None:
        keys = self.by_key
        for record, snapshot in zip(records, kept, strict=True):
            if record.metadata:
                key = record.metadata.get("key")
                if type(key) is str:
                    keys[key] = snapshot

    def reindex_keys(self) -> None:
        """Rebuild :attr:`by_key` from the branches (after some of them went)."""
        self.by_key.clear()
        kept = sorted((k for branch in self.values() for k in branch.events), key=_position_of)
        self.index_keys([k.thaw() for k in kept], kept)


_position_of = attrgetter("position")
_replace = msgspec.structs.replace


class MemoryEventStore(EventStore):
    """An :class:`EventStore` held in memory; gone when the process ends."""

    def __init__(self) -> None:
        self._data: dict[str, _Session] = {}
        #: Every stored record in position order (the global feed).
        self._feed: list[Snapshot] = []
        self._position = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # append below inlines _append: a subclass hooking _append (a test's
        # raced store, say) gets the base's append, which calls it.
        if cls._append is not MemoryEventStore._append and "append" not in vars(cls):
            cls.append = EventStore.append  # type: ignore[method-assign]

    def _needs_close(self) -> bool:
        return False

    async def _close(self) -> None:
        self._data.clear()
        self._feed.clear()

    def _branch(self, session_id: str, branch_id: str) -> _Branch | None:
        branches = self._data.get(session_id)
        return None if branches is None else branches.get(branch_id)

    def _branch_or_main(self, session_id: str, branch_id: str) -> _Branch:
        """The branch; an implicit, not yet registered ``main`` if it has none.

        :raises BranchNotFound: for any other missing branch.
        """
        branch = self._branch(session_id, branch_id)
        if branch is not None:
            return branch
        if branch_id != MAIN:
            raise BranchNotFound(session_id, branch_id)
        return _Branch(None, 0)

    def _keep(self, session_id: str, branch_id: str, branch: _Branch) -> None:
        # Registering only after an operation succeeded: failures leave no trace.
        session = self._data.get(session_id)
        if session is None:
            session = self._data[session_id] = _Session()
        session.setdefault(branch_id, branch)

    def _store(
        self, session_id: str, branch: _Branch, events: list[EventRecord]
    ) -> list[EventRecord]:
        """Keep ``events`` at the next positions, tell the listeners; return them positioned."""
        first = self._position + 1
        self._position += len(events)
        kept = [Snapshot.freeze(event, position=p) for p, event in enumerate(events, first)]
        branch.events.extend(kept)
        self._feed.extend(kept)
        session = self._data[session_id]
        session.ids.update([(k.event_id, k) for k in kept])
        session.index_keys(events, kept)
        replace = msgspec.structs.replace
        stored = [replace(event, position=p) for p, event in enumerate(events, first)]
        self._committed(stored)
        return stored

    def _replay(self, events: list[EventRecord]) -> list[EventRecord] | None:
        """The stored records if the batch was written before (see :func:`replay`)."""
        session = self._data.get(events[0].session_id)
        ids = None if session is None else session.ids
        if not ids:
            return None
        found = [ids.get(event.event_id) for event in events]
        if found.count(None) == len(found):
            return None
        return replay(events, [None if kept is None else kept.thaw() for kept in found])

    async def append(self, event: EventRecord) -> EventRecord:
        """:meth:`EventStore.append`, in one coroutine: the checks and the common case inline.

        The base's ``append`` calls ``check_event`` and then awaits ``_append``:
        here that is one call to the same checks and no second coroutine, and
        the stored snapshot reuses the JSON the check made instead of encoding
        the payload again (together ~40% of an append).

        :raises SequenceConflict, BranchClosed, BranchNotFound, InvalidIdentifier,
            InvalidEvent, StoreClosed: as :meth:`EventStore.append`.
        """
        if type(event) is not EventRecord and not isinstance(event, EventRecord):
            check_event(event)  # raises InvalidEvent
        data_json, metadata_json = check_fields(event)
        if self._closed:
            raise StoreClosed()
        if not self._opened:
            await self.open()
        session = self._data.get(event.session_id)
        branch = None if session is None else session.get(event.branch_id)
        if (
            session is not None
            and branch is not None
            and event.sequence == branch.fork_sequence + len(branch.events) + 1
            and branch.closed_at is None
            and event.event_id not in session.ids
        ):
            position = self._position = self._position + 1
            data = event.data
            # Snapshot.freeze's forms, from the check's JSON: scalars as they are.
            kept = Snapshot(
                event.session_id,
                event.branch_id,
                event.sequence,
                event.kind,
                event.event_id,
                event.recorded_at,
                data if data_json is None or type(data) in _SCALARS else data_json,
                metadata_json,
                position,
            )
            branch.events.append(kept)
            session.ids[event.event_id] = kept
            if event.metadata:
                session.index_keys((event,), (kept,))
            self._feed.append(kept)
            stored = _replace(event, position=position)
            if self.__dict__.get("_listeners"):
                self._committed((stored,))
            return stored
        # A new branch, a retry or an error: the batch path sorts them out.
        return (await self._append_batch([event]))[0]

    async def _append(self, event: EventRecord) -> EventRecord:
        session = self._data.get(event.session_id)
        branch = None if session is None else session.get(event.branch_id)
        if (
            session is not None
            and branch is not None
            # branch.head, inlined: a property call costs as much as the rest here.
            and event.sequence == branch.fork_sequence + len(branch.events) + 1
            and branch.closed_at is None
            and event.event_id not in session.ids
        ):
            position = self._position = self._position + 1
            kept = Snapshot.freeze(event, position=position)
            branch.events.append(kept)
            session.ids[event.event_id] = kept
            if event.metadata:
                session.index_keys((event,), (kept,))
            self._feed.append(kept)
            stored = msgspec.structs.replace(event, position=position)
            if self.__dict__.get("_listeners"):
                self._committed((stored,))
            return stored
        # A new branch, a retry or an error: the batch path sorts them out.
        return (await self._append_batch([event]))[0]

    async def _append_batch(self, events: list[EventRecord]) -> list[EventRecord]:
        first = events[0]
        stored = self._replay(events)
        if stored is not None:
            return stored
        branch = self._branch(first.session_id, first.branch_id)
        if branch is None and first.branch_id != MAIN:
            raise BranchNotFound(first.session_id, first.branch_id)
        head = 0 if branch is None else branch.head
        if first.sequence != head + 1:
            stored = await self._read(
                first.session_id, first.branch_id, first.sequence, events[-1].sequence, None
            )
            return resolve_retry(stored, events, head)
        if branch is None:
            branch = _Branch(None, 0)
            self._keep(first.session_id, first.branch_id, branch)
        branch.check_open(first.session_id, first.branch_id)
        return self._store(first.session_id, branch, events)

    async def _append_next(self, events: list[EventRecord]) -> list[EventRecord]:
        # Nothing awaits between reading the head and storing: never a conflict.
        stored = self._replay(events)
        if stored is not None:
            return stored
        first = events[0]
        branch = self._branch(first.session_id, first.branch_id)
        head = 0 if branch is None else branch.head
        replace = msgspec.structs.replace
        return await self._append_batch(
            [replace(event, sequence=head + event.sequence) for event in events]
        )

    async def _read(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> list[EventRecord]:
        branches = self._data.get(session_id)
        if branches is None or branch_id not in branches:
            return []
        out: list[EventRecord] = []
        for owner, first, last in segments(branches, branch_id, start, end):
            own = branches[owner]
            lo = first - own.fork_sequence - 1
            hi = last - own.fork_sequence
            if limit is not None:
                hi = min(hi, lo + limit - len(out))
            out.extend([kept.thaw() for kept in own.events[lo:hi]])
            if limit is not None and len(out) >= limit:
                break
        return out

    async def _head(self, session_id: str, branch_id: str) -> int:
        branch = self._branch(session_id, branch_id)
        return 0 if branch is None else branch.head

    async def _create_branch(
        self, session_id: str, branch_id: str, from_branch: str, fork_sequence: int | None
    ) -> BranchInfo:
        if branch_id == MAIN or self._branch(session_id, branch_id) is not None:
            # ``main`` exists implicitly in every session, so it is never a fork.
            raise BranchExists(session_id, branch_id)
        parent = self._branch_or_main(session_id, from_branch)
        parent.check_open(session_id, from_branch)
        at = parent.head if fork_sequence is None else fork_sequence
        if at > parent.head:
            raise InvalidBranchOperation(
                session_id,
                branch_id,
                f"fork_sequence {at} is beyond the head {parent.head} of {from_branch!r}",
            )
        branch = _Branch(from_branch, at)
        self._keep(session_id, from_branch, parent)
        self._keep(session_id, branch_id, branch)
        return branch.info(session_id, branch_id)

    async def _merge_branch(
        self, session_id: str, source_branch: str, target_branch: str
    ) -> MergeResult:
        source = self._branch_or_main(session_id, source_branch)
        target = self._branch_or_main(session_id, target_branch)
        branches: dict[str, _Branch] = {**self._data.get(session_id, {}), source_branch: source}
        branches[target_branch] = target
        check_merge(branches, session_id, source_branch, target_branch)
        for name, branch in ((source_branch, source), (target_branch, target)):
            branch.check_open(session_id, name)
        records = merged_records(
            [kept.thaw() for kept in source.events], target_branch, target.head
        )
        source.merged_into = target_branch
        source.closed_at = utc_now()
        self._keep(session_id, source_branch, source)
        self._keep(session_id, target_branch, target)
        if records:
            self._store(session_id, target, records)
        return MergeResult(source_branch, target_branch, len(records), target.head)

    async def _list_branches(self, session_id: str) -> list[BranchInfo]:
        branches = self._data.get(session_id, _Session())
        return [branches[name].info(session_id, name) for name in sorted(branches)]

    async def _branch_info(self, session_id: str, branch_id: str) -> BranchInfo:
        branch = self._branch(session_id, branch_id)
        if branch is None:
            if branch_id != MAIN:
                raise BranchNotFound(session_id, branch_id)
            return _Branch(None, 0).info(session_id, branch_id)
        return branch.info(session_id, branch_id)

    async def _list_sessions(self) -> list[str]:
        return sorted(self._data)

    async def _read_feed(
        self,
        after: int,
        limit: int | None,
        kinds: frozenset[str] | None,
        session_ids: frozenset[str] | None,
    ) -> list[EventRecord]:
        feed = self._feed
        start = bisect_right(feed, after, key=_position_of)
        if kinds is None and session_ids is None:
            end = None if limit is None else start + limit
            return [kept.thaw() for kept in feed[start:end]]
        out: list[EventRecord] = []
        for index in range(start, len(feed)):
            kept = feed[index]
            if (kinds is None or kept.kind in kinds) and (
                session_ids is None or kept.session_id in session_ids
            ):
                out.append(kept.thaw())
                if limit is not None and len(out) >= limit:
                    break
        return out

    async def _feed_head(self) -> int:
        return self._feed[-1].position if self._feed else 0

    async def _close_branch(self, session_id: str, branch_id: str) -> BranchInfo:
        branch = self._branch_or_main(session_id, branch_id)
        if branch.closed_at is None:
            branch.closed_at = utc_now()
        self._keep(session_id, branch_id, branch)
        return branch.info(session_id, branch_id)

    async def _delete_session(self, session_id: str) -> bool:
        if self._data.pop(session_id, None) is None:
            return False
        # Its records leave the feed too (positions are never reused).
        self._feed = [kept for kept in self._feed if kept.session_id != session_id]
        return True

    async def _delete_branch(self, session_id: str, branch_id: str) -> None:
        session = self._data.get(session_id)
        branch = None if session is None else session.get(branch_id)
        if session is None or branch is None:
            raise BranchNotFound(session_id, branch_id)
        forks = sorted(name for name, other in session.items() if other.parent_branch == branch_id)
        if forks:
            raise InvalidBranchOperation(
                session_id, branch_id, f"branches {forks} fork from it; delete them first"
            )
        del session[branch_id]
        for kept in branch.events:
            del session.ids[kept.event_id]
        gone = {id(kept) for kept in branch.events}
        self._feed = [kept for kept in self._feed if id(kept) not in gone]
        if any(id(kept) in gone for kept in session.by_key.values()):
            session.reindex_keys()
        now = utc_now()
        for other in session.values():
            if other.merged_into == branch_id:
                # Still closed, merged into a branch that is no more.
                other.merged_into = None
                other.closed_at = other.closed_at or now

    # -- lookups -----------------------------------------------------------------

    async def _get_event(self, session_id: str, event_id: str) -> EventRecord | None:
        session = self._data.get(session_id)
        kept = None if session is None else session.ids.get(event_id)
        return None if kept is None else kept.thaw()

    async def _get_by_key(self, session_id: str, key: str) -> EventRecord | None:
        session = self._data.get(session_id)
        kept = None if session is None else session.by_key.get(key)
        return None if kept is None else kept.thaw()

    async def _read_last(
        self,
        session_id: str,
        branch_id: str,
        kinds: frozenset[str] | None,
        limit: int,
        end: int | None,
    ) -> list[EventRecord]:
        branches = self._data.get(session_id)
        if branches is None or branch_id not in branches:
            return []
        out: list[EventRecord] = []
        for owner, first, last in reversed(segments(branches, branch_id, 1, end)):
            own = branches[owner]
            base = own.fork_sequence + 1
            for index in range(last - base, first - base - 1, -1):
                kept = own.events[index]
                if kinds is None or kept.kind in kinds:
                    out.append(kept.thaw())
                    if len(out) >= limit:
                        return out
        return out

    async def _read_at(
        self, session_id: str, branch_id: str, sequences: list[int]
    ) -> dict[int, EventRecord]:
        branches = self._data.get(session_id)
        if branches is None or branch_id not in branches:
            return {}
        found: dict[int, EventRecord] = {}
        parts = segments(branches, branch_id, sequences[0], sequences[-1])
        at = 0
        for sequence in sequences:
            while at < len(parts) and parts[at][2] < sequence:
                at += 1
            if at == len(parts):
                break
            owner, first, _ = parts[at]
            if sequence >= first:
                own = branches[owner]
                found[sequence] = own.events[sequence - own.fork_sequence - 1].thaw()
        return found

    async def _copy_session(
        self, source: str, target: str, branch_id: str | None, to_sequence: int | None
    ) -> list[BranchInfo]:
        # Nothing awaits once the plan is made: the copy is atomic on the event loop.
        plan = await self._copy_plan(source, target, branch_id, to_sequence)
        session = self._data[source]
        replace = msgspec.structs.replace
        copied = _Session()
        batches: list[tuple[_Branch, list[EventRecord]]] = []
        if branch_id is not None:
            info = plan[0]
            records = await self._read(source, info.branch_id, 1, info.head, None)
            branch = _Branch(None, 0)
            copied[MAIN] = branch
            batches.append(
                (branch, [replace(r, session_id=target, branch_id=MAIN) for r in records])
            )
        else:
            for info in plan:
                own = session[info.branch_id]
                branch = _Branch(own.parent_branch, own.fork_sequence)
                branch.merged_into = own.merged_into
                branch.closed_at = own.closed_at
                copied[info.branch_id] = branch
                records = [kept.thaw() for kept in own.events]
                batches.append((branch, [replace(r, session_id=target) for r in records]))
        # In the source's write order, so "the last written" of a key stays the same.
        pairs = sorted(
            ((branch, r) for branch, records in batches for r in records),
            key=lambda pair: pair[1].position,
        )
        first = self._position + 1
        self._position += len(pairs)
        out = [replace(r, position=p) for p, (_, r) in enumerate(pairs, first)]
        kept = [Snapshot.freeze(r) for r in out]
        for (branch, _), snapshot in zip(pairs, kept, strict=True):
            branch.events.append(snapshot)
        self._data[target] = copied
        self._feed.extend(kept)
        copied.ids.update([(k.event_id, k) for k in kept])
        copied.index_keys(out, kept)
        if out:
            self._committed(out)
        return [copied[name].info(target, name) for name in sorted(copied)]

    async def _sessions(self, query: SessionQuery) -> list[SessionInfo]:
        prefix, _, _, limit, after = query
        out: list[SessionInfo] = []
        for session_id in sorted(self._data):
            if (after is not None and session_id <= after) or (
                prefix is not None and not session_id.startswith(prefix)
            ):
                continue
            info = _info(session_id, self._data[session_id])
            if query.active(info.last_activity):
                out.append(info)
                if len(out) == limit:
                    break
        return out


def _info(session_id: str, session: _Session) -> SessionInfo:
    return SessionInfo(
        session_id=session_id,
        branches=len(session),
        events=sum(len(branch.events) for branch in session.values()),
        created_at=min(branch.created_at for branch in session.values()),
        last_activity=max(branch.last_activity() for branch in session.values()),
    )
