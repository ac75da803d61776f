"""``examples/property_harness.py`` runs as a user runs it and shows what it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_property_harness_example(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "property_harness.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "invariants, fold and replay hold over 100" in done.stdout, done.stdout
    assert "ForgetfulAgent: caught: tool calls answered violated" in done.stdout, done.stdout
    # Shrunk to the smallest scenario that shows the bug: one turn, one failing tool.
    assert "scenario=[('message', {'role': 'user', 'text': ''})," in done.stdout, done.stdout
    assert "('tool_result', {'id': 'call-1', 'error': ''})," in done.stdout, done.stdout
    assert not done.stderr, done.stderr
