"""The ADK session-service benchmark runs and reports one row per operation."""

from __future__ import annotations

import pytest

pytest.importorskip("google.adk")

from benchmarks._framework_adk import run


def test_rows_compare_both_services() -> None:
    rows = run(steps=20, rounds=1)
    assert [r["name"] for r in rows] == [
        "append_event",
        "get latest",
        "get whole",
        "create",
        "list",
    ]
    for row in rows:
        assert row["ours"] > 0 and row["peer"] > 0
        assert row["ratio"] == pytest.approx(row["ours"] / row["peer"], rel=0.05, abs=0.01)
