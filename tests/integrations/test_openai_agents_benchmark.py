"""The OpenAI Agents session benchmark runs and reports one row per operation."""

from __future__ import annotations

import pytest

pytest.importorskip("agents")

from benchmarks._framework_openai_agents import run


def test_rows_compare_both_sessions() -> None:
    rows = run(steps=20, rounds=1)
    assert [r["name"] for r in rows] == ["add", "get latest", "get last 20", "get all", "pop"]
    for row in rows:
        assert row["ours"] > 0 and row["peer"] > 0
        assert row["ratio"] == pytest.approx(row["ours"] / row["peer"], rel=0.05, abs=0.01)
        assert row["peer_config"]["journal_mode"] == "wal"
