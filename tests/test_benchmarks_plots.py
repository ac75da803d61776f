"""``python -m benchmarks --plots DIR``: one PNG per chart, from the run's own JSON.

matplotlib is a requirement of the benchmarks, not of the library: ``make test``
installs ``benchmarks/requirements.txt``. Without it these tests skip, except
under ``CI=true``, where a missing matplotlib fails them (as a missing
PostgreSQL server does).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHARTS = {"history_size.png", "fork.png", "throughput.png", "live_latency.png"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Blocks ``import matplotlib`` in the child, as if it were not installed.
WITHOUT_MATPLOTLIB = (
    "import sys, runpy; sys.modules['matplotlib'] = None; "
    "sys.argv[0] = 'benchmarks'; runpy.run_module('benchmarks', run_name='__main__')"
)


def _need_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is not None:
        return
    reason = "matplotlib missing: pip install -r benchmarks/requirements.txt"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(reason)
    pytest.skip(reason)


def _bench(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "benchmarks", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


def _check_charts(folder: Path) -> None:
    assert {p.name for p in folder.iterdir()} == CHARTS
    for path in folder.iterdir():
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), path
        assert len(data) > 5000, f"{path} is {len(data)} bytes: an empty chart?"


def test_smoke_run_draws_every_chart(tmp_path: Path) -> None:
    _need_matplotlib()
    out, charts = tmp_path / "smoke.json", tmp_path / "charts"
    proc = _bench("--smoke", "--json", out, "--workdir", tmp_path, "--plots", charts)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_charts(charts)
    for name in CHARTS:
        assert f"chart: {charts / name}" in proc.stdout

    doc = json.loads(out.read_text())
    live = [r for r in doc["results"] if "cdf" in r["detail"]]
    assert {(r["detail"]["subscribers"], r["detail"]["store"]) for r in live} == {
        (1, "file"),
        (doc["sizes"]["subscribers"], "file"),
        (doc["sizes"]["subscribers"], "memory"),
    }
    for row in live:
        seconds = row["detail"]["cdf"]["seconds"]
        assert seconds == sorted(seconds) and seconds[0] > 0
    forks = next(r for r in doc["results"] if "by_branches" in r["detail"])
    assert forks["ours"] > 0 and forks["baseline"] > 0
    assert forks["detail"]["by_branches"]["branches"][:3] == [1, 2, 5]

    # The same JSON redraws without running anything.
    again = tmp_path / "again"
    proc = _bench("--plots", again, "--from-json", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_charts(again)


def test_a_run_without_data_for_a_chart_skips_it(tmp_path: Path) -> None:
    _need_matplotlib()
    out, charts = tmp_path / "fork.json", tmp_path / "charts"
    proc = _bench("--smoke", "--only", "fork", "--json", out, "--workdir", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _bench("--plots", charts, "--from-json", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in charts.iterdir()} == {"fork.png"}
    assert "no data in this run for: history_size.png, throughput.png, live_latency.png" in (
        proc.stderr
    )


def test_plots_without_matplotlib_fail_before_running(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", WITHOUT_MATPLOTLIB, "--smoke", "--plots", str(tmp_path / "c")]
    cmd += ["--json", str(tmp_path / "never.json")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "pip install -r benchmarks/requirements.txt" in proc.stderr
    assert not (tmp_path / "never.json").exists()


def test_from_json_needs_plots(tmp_path: Path) -> None:
    proc = _bench("--from-json", tmp_path / "x.json")
    assert proc.returncode == 2
    assert "--from-json needs --plots DIR" in proc.stderr
