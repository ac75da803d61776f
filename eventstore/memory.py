"""``MemoryEventStore``: the whole contract in a process's memory.

The reference backend: fast, deterministic, nothing persisted. Every operation
runs without awaiting in between, so each one is atomic on the event loop.

Like the file store, it keeps its own copy of what it stores (a
:class:`~eventstore._snapshot.Snapshot`) and hands out new records on every
read, so neither the caller of ``append`` nor any reader can change history by
mutating a payload.
"""

from __future__ import annotations

from ._base import EventStore, replay, resolve_retry
from ._errors import BranchClosed, BranchExists, BranchNotFound, InvalidBranchOperation
from ._ids import MAIN
from ._lineage import check_merge, merged_records, segments
from ._records import BranchInfo, EventRecord, MergeResult, utc_now
from ._snapshot import Snapshot

__all__ = ("MemoryEventStore",)


class _Branch:
    __slots__ = ("created_at", "events", "fork_sequence", "ids", "merged_into", "parent_branch")

    def __init__(self, parent_branch: str | None, fork_sequence: int) -> None:
        self.parent_branch = parent_branch
        self.fork_sequence = fork_sequence
        self.created_at = utc_now()
        self.merged_into: str | None = None
        self.events: list[Snapshot] = []
        #: event id -> sequence of every own record.
        self.ids: dict[str, int] = {}

    @property
    def head(self) -> int:
        return self.fork_sequence + len(self.events)

    def info(self, session_id: str, branch_id: str) -> BranchInfo:
        return BranchInfo(
            session_id=session_id,
            branch_id=branch_id,
            parent_branch=self.parent_branch,
            fork_sequence=self.fork_sequence,
            head=self.head,
            created_at=self.created_at,
            merged_into=self.merged_into,
        )


def _unseen(branches: dict[str, _Branch], event_id: str) -> bool:
    for branch in branches.values():  # noqa: SIM110 - no generator on the hot path
        if event_id in branch.ids:
            return False
    return True


class MemoryEventStore(EventStore):
    """An :class:`EventStore` held in memory; gone when the process ends."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, _Branch]] = {}

    def _needs_close(self) -> bool:
        return False

    async def _close(self) -> None:
        self._sessions.clear()

    def _branch(self, session_id: str, branch_id: str) -> _Branch | None:
        branches = self._sessions.get(session_id)
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
        self._sessions.setdefault(session_id, {}).setdefault(branch_id, branch)

    def _replay(self, events: list[EventRecord]) -> list[EventRecord] | None:
        """The stored records if the batch was written before (see :func:`replay`)."""
        found: list[EventRecord | None] = [None] * len(events)
        hit = False
        for branch in self._sessions.get(events[0].session_id, {}).values():
            for n, event in enumerate(events):
                sequence = branch.ids.get(event.event_id)
                if sequence is not None:
                    found[n] = branch.events[sequence - branch.fork_sequence - 1].thaw()
                    hit = True
        return replay(events, found) if hit else None

    async def _append(self, event: EventRecord) -> EventRecord:
        branches = self._sessions.get(event.session_id, {})
        branch = branches.get(event.branch_id)
        if (
            branch is not None
            and event.sequence == branch.head + 1
            and _unseen(branches, event.event_id)
        ):
            # The common case, without building a one-event batch.
            if branch.merged_into is not None:
                raise BranchClosed(event.session_id, event.branch_id, branch.merged_into)
            branch.events.append(Snapshot.freeze(event))
            branch.ids[event.event_id] = event.sequence
            return event
        return (await self._append_batch([event]))[0]

    async def _append_batch(self, events: list[EventRecord]) -> list[EventRecord]:
        first = events[0]
        stored = self._replay(events)
        if stored is not None:
            return stored
        branch = self._branch(first.session_id, first.branch_id)
        head = 0 if branch is None else branch.head
        if first.sequence != head + 1:
            stored = await self._read(
                first.session_id, first.branch_id, first.sequence, events[-1].sequence, None
            )
            return resolve_retry(stored, events, head)
        if branch is None:
            branch = _Branch(None, 0)
            self._sessions.setdefault(first.session_id, {})[first.branch_id] = branch
        if branch.merged_into is not None:
            raise BranchClosed(first.session_id, first.branch_id, branch.merged_into)
        branch.events.extend([Snapshot.freeze(event) for event in events])
        branch.ids.update((event.event_id, event.sequence) for event in events)
        return events

    async def _read(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> list[EventRecord]:
        branches = self._sessions.get(session_id)
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
        if parent.merged_into is not None:
            raise BranchClosed(session_id, from_branch, parent.merged_into)
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
        branches = {**self._sessions.get(session_id, {}), source_branch: source}
        branches[target_branch] = target
        check_merge(branches, session_id, source_branch, target_branch)
        for name, branch in ((source_branch, source), (target_branch, target)):
            if branch.merged_into is not None:
                raise BranchClosed(session_id, name, branch.merged_into)
        records = merged_records(
            [kept.thaw() for kept in source.events], target_branch, target.head
        )
        target.events.extend([Snapshot.freeze(record) for record in records])
        target.ids.update((record.event_id, record.sequence) for record in records)
        source.merged_into = target_branch
        self._keep(session_id, source_branch, source)
        self._keep(session_id, target_branch, target)
        return MergeResult(source_branch, target_branch, len(records), target.head)

    async def _list_branches(self, session_id: str) -> list[BranchInfo]:
        branches = self._sessions.get(session_id, {})
        return [branches[name].info(session_id, name) for name in sorted(branches)]

    async def _branch_info(self, session_id: str, branch_id: str) -> BranchInfo:
        branch = self._branch(session_id, branch_id)
        if branch is None:
            if branch_id != MAIN:
                raise BranchNotFound(session_id, branch_id)
            return _Branch(None, 0).info(session_id, branch_id)
        return branch.info(session_id, branch_id)

    async def _list_sessions(self) -> list[str]:
        return sorted(self._sessions)
