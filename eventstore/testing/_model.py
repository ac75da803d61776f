"""The reference model the state machine compares a store against.

Plain lists and dicts, written from DESIGN.md alone: a branch's history is its
parent's history cut at the fork point plus its own events. It shares no code
with :mod:`eventstore._lineage` on purpose, so a bug there cannot hide here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .._errors import (
    BranchClosed,
    BranchExists,
    BranchNotFound,
    EventStoreError,
    InvalidBranchOperation,
)
from .._ids import MAIN
from .._records import EventRecord

__all__ = ("ModelBranch", "ReferenceModel")

ErrorTypes = frozenset[type[EventStoreError]]


@dataclass
class ModelBranch:
    """One branch: where it forked, its own events, whether it was merged."""

    parent: str | None = None
    fork: int = 0
    own: list[EventRecord] = field(default_factory=list)
    merged_into: str | None = None
    #: Closed by ``close_branch`` (or a merge target deleted after the merge).
    closed: bool = False
    #: First ``created_at`` the store reported; later reports must agree.
    created_at: datetime | None = None

    @property
    def head(self) -> int:
        return self.fork + len(self.own)


class ReferenceModel:
    """Sessions of branches, and the errors each operation must raise."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, ModelBranch]] = {}

    # -- queries -----------------------------------------------------------------

    def branch(self, session_id: str, branch_id: str) -> ModelBranch | None:
        return self.sessions.get(session_id, {}).get(branch_id)

    def exists(self, session_id: str, branch_id: str) -> bool:
        """``main`` always exists; other branches once created."""
        return branch_id == MAIN or self.branch(session_id, branch_id) is not None

    def closed(self, session_id: str, branch_id: str) -> bool:
        branch = self.branch(session_id, branch_id)
        return branch is not None and (branch.merged_into is not None or branch.closed)

    def head(self, session_id: str, branch_id: str) -> int:
        branch = self.branch(session_id, branch_id)
        return 0 if branch is None else branch.head

    def history(self, session_id: str, branch_id: str) -> list[EventRecord]:
        branch = self.branch(session_id, branch_id)
        if branch is None:
            return []
        inherited = [] if branch.parent is None else self.history(session_id, branch.parent)
        return inherited[: branch.fork] + branch.own

    def window(
        self,
        session_id: str,
        branch_id: str,
        start: int,
        end: int | None,
        limit: int | None,
    ) -> list[EventRecord]:
        """What ``read(session_id, branch_id, start, limit, to_sequence=end)`` returns."""
        picked = [
            r
            for r in self.history(session_id, branch_id)
            if r.sequence >= start and (end is None or r.sequence <= end)
        ]
        return picked if limit is None else picked[:limit]

    def lineage(self, session_id: str, branch_id: str) -> list[str]:
        """The branch and its ancestors, nearest first."""
        chain: list[str] = []
        current: str | None = branch_id
        while current is not None:
            chain.append(current)
            branch = self.branch(session_id, current)
            current = None if branch is None else branch.parent
        return chain

    def own_events(self) -> list[tuple[str, str, list[EventRecord]]]:
        """Every (session, branch, own events) with at least one event."""
        return [
            (s, b, branch.own)
            for s, branches in sorted(self.sessions.items())
            for b, branch in sorted(branches.items())
            if branch.own
        ]

    def summary(self, session_id: str) -> tuple[int, int]:
        """``(branches, events)`` as :class:`~eventstore.SessionInfo` reports them."""
        branches = self.sessions[session_id]
        return len(branches), sum(len(branch.own) for branch in branches.values())

    # -- expected errors ---------------------------------------------------------

    def append_errors(self, session_id: str, branch_id: str) -> ErrorTypes:
        """The error an append at the head must raise: only ``main`` is implicit."""
        if not self.exists(session_id, branch_id):
            return frozenset({BranchNotFound})
        return frozenset({BranchClosed}) if self.closed(session_id, branch_id) else frozenset()

    def delete_branch_errors(self, session_id: str, branch_id: str) -> ErrorTypes:
        """Every error ``delete_branch`` may raise here; empty if it must succeed."""
        errors: set[type[EventStoreError]] = set()
        if branch_id == MAIN:
            errors.add(InvalidBranchOperation)
        elif self.branch(session_id, branch_id) is None:
            errors.add(BranchNotFound)
        elif any(b.parent == branch_id for b in self.sessions[session_id].values()):
            errors.add(InvalidBranchOperation)
        return frozenset(errors)

    def fork_errors(
        self, session_id: str, branch_id: str, from_branch: str, fork_sequence: int | None
    ) -> ErrorTypes:
        """Every error ``create_branch`` may raise here; empty if it must succeed.

        When several apply, any one of them is a correct answer.
        """
        errors: set[type[EventStoreError]] = set()
        if self.exists(session_id, branch_id):
            errors.add(BranchExists)
        if not self.exists(session_id, from_branch):
            errors.add(BranchNotFound)
        elif self.closed(session_id, from_branch):
            errors.add(BranchClosed)
        elif fork_sequence is not None and fork_sequence > self.head(session_id, from_branch):
            errors.add(InvalidBranchOperation)
        return frozenset(errors)

    def merge_errors(self, session_id: str, source: str, target: str) -> ErrorTypes:
        """Every error ``merge_branch`` may raise here; empty if it must succeed."""
        errors: set[type[EventStoreError]] = set()
        missing = [b for b in (source, target) if not self.exists(session_id, b)]
        if missing:
            errors.add(BranchNotFound)
        if source == target or (not missing and source in self.lineage(session_id, target)):
            errors.add(InvalidBranchOperation)
        if any(self.closed(session_id, b) for b in (source, target)):
            errors.add(BranchClosed)
        return frozenset(errors)

    # -- changes (only after the store acknowledged them) -------------------------

    def materialize(self, session_id: str, branch_id: str) -> ModelBranch:
        """The branch, created as an empty root branch if it was only implicit."""
        branches = self.sessions.setdefault(session_id, {})
        return branches.setdefault(branch_id, ModelBranch())

    def appended(self, records: list[EventRecord]) -> None:
        first = records[0]
        self.materialize(first.session_id, first.branch_id).own.extend(records)

    def forked(
        self, session_id: str, branch_id: str, from_branch: str, at: int, created: datetime
    ) -> None:
        self.materialize(session_id, from_branch)
        self.sessions[session_id][branch_id] = ModelBranch(from_branch, at, created_at=created)

    def merged(self, session_id: str, source: str, target: str, records: list[EventRecord]) -> None:
        self.materialize(session_id, source).merged_into = target
        self.materialize(session_id, target).own.extend(records)

    def closed_branch(self, session_id: str, branch_id: str) -> None:
        self.materialize(session_id, branch_id).closed = True

    def deleted_branch(self, session_id: str, branch_id: str) -> None:
        branches = self.sessions[session_id]
        del branches[branch_id]
        for branch in branches.values():
            if branch.merged_into == branch_id:
                # Still closed, merged into a branch that is no more.
                branch.merged_into = None
                branch.closed = True
