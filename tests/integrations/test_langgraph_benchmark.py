"""The LangGraph benchmark still runs and reports every operation (figures unchecked)."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("langgraph")

from benchmarks._framework_langgraph import run

OPERATIONS = ["put", "put_writes", "get by id", "get latest", "list", "graph step"]


def test_benchmark_rows() -> None:
    rows = run(steps=10, rounds=1)
    assert [row["name"] for row in rows] == OPERATIONS
    peer = importlib.util.find_spec("langgraph.checkpoint.sqlite") is not None
    for row in rows:
        assert row["ours"] > 0
        if peer:
            assert row["peer"] > 0 and row["ratio"] == pytest.approx(
                row["ours"] / row["peer"], rel=0.05, abs=0.01
            )
        else:
            assert row["peer"] is None and row["ratio"] is None
