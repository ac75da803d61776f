"""The benchmark suite still runs: ``python -m benchmarks --smoke`` in a subprocess.

The figures are not checked (a shared CI box makes them noise); the shape is:
every workload produced its rows, none errored, the JSON is complete, and a
missing peer library turns into "n/a" rather than a crash.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Rows whose backend ships with the core, so they must always carry a figure.
ALWAYS_MEASURED = ("memory store sequential append",)

#: Every goal of the performance issue (16), as a row of a ``--smoke`` run: its goal.
GOAL_ROWS = {
    "sequential append, durability=write": ">= 3x SQLite NORMAL",
    "sequential append, durability=write, vs limit": ">= 0.25x limit",
    "sequential append, durability=fsync": ">= 1.2x SQLite FULL",
    "batch append (100/batch), fsync, vs limit": ">= 0.7x limit",
    "live p99 append->delivery, 100 sub, 1,000/s": "<= 1 ms at 1,000/s",
    "live writer rate, 100 sub, asked 1,000/s": ">= 0.95x asked",
    "memory store sequential append": ">= 1x POPO",
    "fork (create_branch) with 20 branches": "<= 1.5x with 1",
    "postgres append, 1 ev/call": ">= 1.2x es-PG",
    "postgres append, 100 ev/batch": ">= 1.5x es-PG",
    "postgres read 200 events": ">= 1.5x es-PG",
    "50 new sessions, 1 event each, fsync": ">= 0.5x existing",
}

#: Goal rows whose baseline is measured without the peer library.
OWN_GOAL_ROWS = (
    "sequential append, durability=write, vs limit",
    "batch append (100/batch), fsync, vs limit",
    "live writer rate, 100 sub, asked 1,000/s",
    "fork (create_branch) with 20 branches",
    "50 new sessions, 1 event each, fsync",
)

#: Blocks ``import eventsourcing`` in the child, as if it were not installed.
FRAMEWORK_PEERS = ("AsyncSqliteSaver", "SQLiteSession", "SqliteSessionService")

WITHOUT_PEER = (
    "import sys, runpy; sys.modules['eventsourcing'] = None; "
    "sys.argv[0] = 'benchmarks'; runpy.run_module('benchmarks', run_name='__main__')"
)


def _run(tmp_path: Path, *prefix: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "smoke.json"
    cmd = [*prefix, "--smoke", "--json", str(out), "--workdir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def _check_shape(doc: dict[str, Any], stdout: str) -> dict[str, dict[str, Any]]:
    from benchmarks import WORKLOADS

    assert doc["mode"] == "smoke"
    assert doc["machine"]["nproc"] >= 1
    results = {r["workload"]: r for r in doc["results"]}
    assert len(results) == len(doc["results"]), "workload names must be unique"
    assert len(results) >= len(WORKLOADS)
    for row in results.values():
        assert row["status"] == "ok", row
        assert row["ours"] is None or row["ours"] > 0, row
        assert row["workload"] in stdout
    for name in ALWAYS_MEASURED:
        assert results[name]["ours"] is not None
    for name, goal in GOAL_ROWS.items():
        row = results[name]
        assert row["goal"] == goal, row
        if row["ours"] is not None and row["baseline"] is not None:
            # A goal with both figures is decided, and its ratio is in the table.
            assert row["ratio"] > 0 and row["met"] in (True, False), row
            assert f"{row['ratio']:.2f}x" in stdout
    for name in OWN_GOAL_ROWS:
        assert results[name]["ours"] is not None and results[name]["baseline"] is not None
        assert not results[name]["peer_baseline"], results[name]
    return results


def test_smoke_run(tmp_path: Path) -> None:
    proc, doc = _run(tmp_path, sys.executable, "-m", "benchmarks")
    results = _check_shape(doc, proc.stdout)
    memory = results["memory store sequential append"]
    sqlite = results["concurrent append, 100 sessions, fsync"]
    if importlib.util.find_spec("eventsourcing") is None:
        assert memory["baseline"] is None and sqlite["baseline"] is None
    else:
        assert memory["baseline"] > 0 and memory["ratio"] > 0
        assert sqlite["baseline"] > 0
        assert sqlite["detail"]["sqlite"]["journal_mode"] == "wal"
        # The SQLite peers run at the synchronous level their row names: FULL (2)
        # against fsync, NORMAL (1) against write.
        for durability, level in (("fsync", 2), ("write", 1)):
            row = results[f"sequential append, durability={durability}"]
            assert row["detail"]["sqlite"] == {"journal_mode": "wal", "synchronous": level}
            assert row["baseline_name"].startswith(f"SQLite WAL {('', 'NORMAL', 'FULL')[level]}")
    # The rows against the limit restate the limit column of the row they derive from.
    for name in ("sequential append, durability=write", "batch append (100/batch), fsync"):
        assert results[f"{name}, vs limit"]["baseline"] == results[name]["limit"]
    held = results["live writer rate, 100 sub, asked 1,000/s"]
    assert held["baseline"] == 1000 and held["ours"] == pytest.approx(
        results["live p99 append->delivery, 100 sub, 1,000/s"]["detail"]["achieved_rate"]
    )


def test_smoke_run_without_peer(tmp_path: Path) -> None:
    proc, doc = _run(tmp_path, sys.executable, "-c", WITHOUT_PEER)
    results = _check_shape(doc, proc.stdout)
    for row in results.values():
        # The frameworks' own SQLite stores are their peers there, not eventsourcing.
        if row["peer_baseline"] and not row["baseline_name"].startswith(FRAMEWORK_PEERS):
            assert row["baseline"] is None, row
    assert "n/a" in proc.stdout
