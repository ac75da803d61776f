"""The branch-graph helpers the tools share: children maps and parents-first order."""

from __future__ import annotations

from datetime import UTC, datetime

from eventstore import BranchInfo
from eventstore._lineage import children, parents_first, segments

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def info(branch: str, parent: str | None = None, fork: int = 0, head: int = 0) -> BranchInfo:
    return BranchInfo("s", branch, parent, fork, head, T0)


BRANCHES = [
    info("zeta", "main", 2, 4),
    info("alt", "main", 1, 3),
    info("main", None, 0, 5),
    info("deep", "alt", 2, 6),
    info("orphan", "gone", 3, 3),
]


def test_children_sorted_by_the_callers_key_with_orphans_as_roots() -> None:
    graph = children(BRANCHES, lambda b: b.branch_id)
    assert [b.branch_id for b in graph[None]] == ["main", "orphan"]
    assert [b.branch_id for b in graph["main"]] == ["alt", "zeta"]
    assert [b.branch_id for b in graph["alt"]] == ["deep"]
    by_fork = children(BRANCHES, lambda b: -b.fork_sequence)
    assert [b.branch_id for b in by_fork["main"]] == ["zeta", "alt"]


def test_parents_first_is_level_by_level_main_first() -> None:
    assert parents_first(BRANCHES) == ["main", "orphan", "alt", "zeta", "deep"]
    assert parents_first([]) == []


def test_a_whole_history_is_its_segments_root_first() -> None:
    by_id = {b.branch_id: b for b in BRANCHES[:4]}
    assert segments(by_id, "deep", 1, None) == [("main", 1, 1), ("alt", 2, 2), ("deep", 3, 6)]
    assert segments(by_id, "main", 1, None) == [("main", 1, 5)]
