"""Operation sequences: a generated workload any store can replay.

An operation names what to do, not the sequence to use: :func:`apply_operation`
reads the head and appends after it, so every generated sequence is a valid
program whose only failures are branch-graph errors (fork of an unknown branch,
merge into a descendant...). Operations are msgspec Structs, so a failing
workload can be saved as JSON and replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from hypothesis import strategies as st

from .._base import EventStore
from .._errors import EventStoreError
from .._ids import MAIN
from .._records import BranchInfo, EventRecord, MergeResult
from ._strategies import event_kinds, json_values

__all__ = (
    "Append",
    "AppendBatch",
    "Fork",
    "Merge",
    "Operation",
    "Outcome",
    "apply_operation",
    "apply_operations",
    "operations",
)


class Append(msgspec.Struct, frozen=True, tag=True):
    """Append one event at the head of a branch."""

    session_id: str
    branch_id: str
    kind: str
    data: Any = None


class AppendBatch(msgspec.Struct, frozen=True, tag=True):
    """Append ``(kind, data)`` items as one batch at the head of a branch."""

    session_id: str
    branch_id: str
    items: tuple[tuple[str, Any], ...]


class Fork(msgspec.Struct, frozen=True, tag=True):
    """``create_branch``; ``fork_sequence=None`` forks at the parent's head."""

    session_id: str
    branch_id: str
    from_branch: str = MAIN
    fork_sequence: int | None = None


class Merge(msgspec.Struct, frozen=True, tag=True):
    """``merge_branch`` of ``source_branch`` into ``target_branch``."""

    session_id: str
    source_branch: str
    target_branch: str


Operation = Append | AppendBatch | Fork | Merge
#: What an operation returned, or the store error it raised.
Outcome = list[EventRecord] | BranchInfo | MergeResult | EventStoreError


async def apply_operation(store: EventStore, op: Operation) -> Outcome:
    """Run one operation; a store error is returned, not raised.

    :raises TypeError: for something that is not an :data:`Operation`.
    """
    try:
        if isinstance(op, Append | AppendBatch):
            items = [(op.kind, op.data)] if isinstance(op, Append) else list(op.items)
            first = await store.head(op.session_id, op.branch_id) + 1
            batch = [
                EventRecord.new(op.session_id, op.branch_id, first + n, kind, data)
                for n, (kind, data) in enumerate(items)
            ]
            return await store.append_batch(batch)
        if isinstance(op, Fork):
            return await store.create_branch(
                op.session_id,
                op.branch_id,
                from_branch=op.from_branch,
                fork_sequence=op.fork_sequence,
            )
        if isinstance(op, Merge):
            return await store.merge_branch(op.session_id, op.source_branch, op.target_branch)
    except EventStoreError as exc:
        return exc
    raise TypeError(f"not an operation: {op!r}")


async def apply_operations(store: EventStore, ops: Sequence[Operation]) -> list[Outcome]:
    """Run operations in order; see :func:`apply_operation`."""
    return [await apply_operation(store, op) for op in ops]


def operations(
    *,
    session_ids: Sequence[str] = ("s1", "s2"),
    branch_ids: Sequence[str] = (MAIN, "b1", "b2", "b3"),
    min_size: int = 0,
    max_size: int = 30,
) -> st.SearchStrategy[list[Operation]]:
    """Lists of operations over small pools of names, so they build on each other.

    Small pools make forks of forks, merges back and conflicts likely; pass
    :func:`identifiers` samples to widen them.
    """
    sessions = st.sampled_from(list(session_ids))
    branches = st.sampled_from(list(branch_ids))
    payload = json_values(max_leaves=4)
    one: st.SearchStrategy[Operation] = st.one_of(
        st.builds(Append, sessions, branches, event_kinds(), payload),
        st.builds(
            AppendBatch,
            sessions,
            branches,
            st.lists(st.tuples(event_kinds(), payload), min_size=1, max_size=4).map(tuple),
        ),
        st.builds(Fork, sessions, branches, branches, st.none() | st.integers(0, 8)),
        st.builds(Merge, sessions, branches, branches),
    )
    return st.lists(one, min_size=min_size, max_size=max_size)
