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

ROOT = Path(__file__).resolve().parent.parent

#: Rows whose backend ships with the core, so they must always carry a figure.
ALWAYS_MEASURED = ("memory store sequential append",)

#: Blocks ``import eventsourcing`` in the child, as if it were not installed.
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


def test_smoke_run_without_peer(tmp_path: Path) -> None:
    proc, doc = _run(tmp_path, sys.executable, "-c", WITHOUT_PEER)
    results = _check_shape(doc, proc.stdout)
    for row in results.values():
        if row["baseline_name"] and not row["baseline_name"].startswith("ours"):
            assert row["baseline"] is None, row
    assert "n/a" in proc.stdout
