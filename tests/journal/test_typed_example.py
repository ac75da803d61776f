"""``examples/fold_steps.py`` runs as a user runs it, on its demo and on a store of ours."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from eventstore import EventRecord
from eventstore.file import FileEventStore

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "examples" / "fold_steps.py"


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    paths = [str(PROJECT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    return subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_demo_prints_the_state_at_each_tool_call() -> None:
    done = run_example()
    assert done.returncode == 0, done.stderr
    calls = [line.split()[:2] for line in done.stdout.splitlines() if line.startswith("#")]
    assert calls == [
        ["#2", "lookup_price({'item':"],
        ["#4", "calculator({'expression':"],
        ["#6", "send_invoice({'amount':"],
    ]
    assert "fold(to_sequence=5) gives the same state" in done.stdout


async def test_replays_an_existing_store_read_only(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, durability="write") as store:
        await store.append(EventRecord.new("s", "main", 1, "message", {"role": "u", "text": "hi"}))
        await store.append(EventRecord.new("s", "main", 2, "phase", {"name": "plan"}))
        await store.append(EventRecord.new("s", "main", 3, "tool_call", {"tool": "ls"}))
        await store.create_branch("s", "retry", fork_sequence=2)
        await store.append(EventRecord.new("s", "retry", 3, "tool_call", {"tool": "cat"}))
        # The writer is still open: the replay must work beside it.
        done = run_example(str(tmp_path), "s", "retry")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("#3    cat({}) — the agent knew:\n")
        assert "transcript: ['u: hi']" in done.stdout
        assert "fold(to_sequence=2)" in done.stdout
        missing = run_example(str(tmp_path), "nope")
        assert missing.returncode == 2
        assert "no session 'nope'" in missing.stderr
