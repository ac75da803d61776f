"""The examples run as a user runs them: a fresh process, warnings as errors.

To add an example, add one ``Example`` line to ``EXAMPLES``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent


class Example(NamedTuple):
    script: str
    #: Text the output must contain, proof that it did its job.
    shows: str
    #: Seconds it may take, start-up included.
    budget: float = 5.0
    #: Pass a fresh directory as the first argument.
    with_root: bool = False


EXAMPLES = [
    Example("quickstart.py", "assistant: Sunscreen"),
    Example("quickstart.py", "try: jq", with_root=True),
    Example("fork_and_compare.py", "share steps 1..4, then diverge"),
    Example("fork_and_compare.py", "since step 4, try-flights did", with_root=True),
    Example("replay_debug.py", "diverged at step 4"),
    Example("replay_debug.py", "main and fixed share steps 1..3", with_root=True),
    Example("consumer.py", "indexed 7 messages once each, dead-lettered 1", budget=10.0),
    Example(
        "consumer.py", "dead letter: support-chat#9 after 3 attempts", with_root=True, budget=10.0
    ),
    # Importing the agent SDKs alone takes 1-3 s.
    Example("openai_agents_session.py", "main branch still ends with: For Lisbon", budget=10.0),
    Example("openai_agents_session.py", "(removes #4)", with_root=True, budget=10.0),
    Example("adk_session.py", "'app:visits': 4, 'user:visits': 3, 'visits': 2", budget=10.0),
    Example("adk_session.py", "sessions: ana@example.com/chat 1", with_root=True, budget=10.0),
]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.script}{'-root' * e.with_root}")
def test_example_runs(example: Example, tmp_path: Path) -> None:
    args = [str(tmp_path / "root")] if example.with_root else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / example.script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert example.shows in done.stdout, done.stdout
    assert not done.stderr, done.stderr
    assert elapsed < example.budget, f"{example.script} took {elapsed:.1f}s"
