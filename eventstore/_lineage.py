"""Copy-on-write branch arithmetic shared by every backend.

A branch stores only its *own* events: sequences ``fork_sequence + 1 .. head``.
Its logical history is its parent's logical history up to ``fork_sequence``,
then its own events. Reading a range therefore splits into at most one
contiguous *segment* per ancestor, each read from that ancestor's own storage,
which keeps lineage reads at O(events read).

The branch graph of a session's :class:`BranchInfo` list (:func:`children`,
:func:`parents_first`) serves the tools that walk it: ``export --all`` order
and the ``branches`` tree drawing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ._errors import InvalidBranchOperation
from ._ids import MAIN
from ._records import BranchInfo, EventRecord

__all__ = (
    "BranchLike",
    "Segment",
    "ancestors",
    "children",
    "merged_records",
    "parents_first",
    "segments",
)


class BranchLike(Protocol):
    """What the arithmetic needs to know of a branch."""

    @property
    def parent_branch(self) -> str | None: ...

    @property
    def fork_sequence(self) -> int: ...

    @property
    def head(self) -> int: ...


#: ``(branch_id, first, last)``: read sequences ``first..last`` of that branch's own events.
Segment = tuple[str, int, int]


def ancestors(branches: Mapping[str, BranchLike], branch_id: str) -> list[str]:
    """``branch_id`` and its ancestors, nearest first."""
    chain = [branch_id]
    parent = branches[branch_id].parent_branch
    while parent is not None:
        chain.append(parent)
        parent = branches[parent].parent_branch
    return chain


def segments(
    branches: Mapping[str, BranchLike], branch_id: str, start: int, end: int | None
) -> list[Segment]:
    """The own-event ranges that make up ``start..end`` of the branch's history, in order."""
    found: list[Segment] = []
    upper = branches[branch_id].head if end is None else min(end, branches[branch_id].head)
    current: str | None = branch_id
    while current is not None and upper >= start:
        info = branches[current]
        first = max(start, info.fork_sequence + 1)
        if first <= upper:
            found.append((current, first, upper))
        upper = min(upper, info.fork_sequence)
        current = info.parent_branch
    found.reverse()
    return found


def children(
    branches: Sequence[BranchInfo], key: Callable[[BranchInfo], Any]
) -> dict[str | None, list[BranchInfo]]:
    """Each branch's children sorted by ``key``; the roots under ``None``.

    A branch whose parent is not in ``branches`` counts as a root.
    """
    known = {info.branch_id for info in branches}
    found: dict[str | None, list[BranchInfo]] = {}
    for info in branches:
        parent = info.parent_branch if info.parent_branch in known else None
        found.setdefault(parent, []).append(info)
    for group in found.values():
        group.sort(key=key)
    return found


def parents_first(branches: Sequence[BranchInfo]) -> list[str]:
    """Branch ids ordered so each comes after its parent: level by level, ``main`` first."""
    graph = children(branches, lambda info: (info.branch_id != MAIN, info.branch_id))
    order: list[str] = []
    pending: list[str | None] = [None]
    while pending:
        for info in graph.get(pending.pop(0), []):
            if info.branch_id not in order:
                order.append(info.branch_id)
                pending.append(info.branch_id)
    return order


def check_merge(
    branches: Mapping[str, BranchLike], session_id: str, source: str, target: str
) -> None:
    """Refuse a merge into itself or into one of the source's descendants.

    :raises InvalidBranchOperation: if the target is the source or descends from it.
    """
    if source == target:
        raise InvalidBranchOperation(session_id, source, "cannot merge a branch into itself")
    if source in ancestors(branches, target):
        raise InvalidBranchOperation(
            session_id, source, f"cannot merge into its own descendant {target!r}"
        )


def merged_records(
    source_events: Iterable[EventRecord], target_branch: str, target_head: int
) -> list[EventRecord]:
    """New records for ``target_branch``, one per source event, after ``target_head``.

    Each keeps kind, data and metadata and adds ``metadata["merged_from"]`` naming
    the original; each gets a fresh event id and timestamp.
    """
    out: list[EventRecord] = []
    for offset, event in enumerate(source_events, start=1):
        metadata: dict[str, Any] = dict(event.metadata)
        metadata["merged_from"] = {
            "branch_id": event.branch_id,
            "sequence": event.sequence,
            "event_id": event.event_id,
        }
        out.append(
            EventRecord.new(
                event.session_id,
                target_branch,
                target_head + offset,
                event.kind,
                event.data,
                metadata=metadata,
            )
        )
    return out
