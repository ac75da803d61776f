"""``eventstore verify`` and ``show`` on hostile or damaged stores (issue 11, D2, D3, D5, D12).

Each case: ``verify`` exits 1 naming the file, ``show`` fails fast instead of
hanging or answering from a store that lost its history.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventstore import EventRecord
from eventstore.file import FileEventStore

PROJECT = str(Path(__file__).resolve().parents[2])


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "journal", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    """Session ``s``: main 1..3, ``f`` forked at 3 without events of its own."""
    root = tmp_path / "root"
    async with FileEventStore(root, durability="write") as store:
        for sequence in (1, 2, 3):
            await store.append(EventRecord.new("s", "main", sequence, "k", sequence))
        await store.create_branch("s", "f")
    return root


def edit(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "s" / "branches.json"
    manifest = json.loads(path.read_bytes())
    change(manifest)
    path.write_text(json.dumps(manifest))


def entry(manifest: dict[str, Any], branch_id: str) -> dict[str, Any]:
    [found] = [b for b in manifest["branches"] if b["branch_id"] == branch_id]
    return found


def refused(root: Path, where: Path, message: str) -> None:
    """``verify`` exits 1 with ``where: ... message``; ``show`` exits 1 with it too."""
    checked = run(root, "verify")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert any(
        line.startswith(str(where)) and message in line for line in checked.stdout.splitlines()
    ), checked.stdout
    shown = run(root, "show", "s", "--branch", "f")
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert message in shown.stderr


def test_a_hostile_branch_id(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "outside" / "victim.jsonl"
    victim.parent.mkdir()
    victim.write_bytes(b"precious\n")
    edit(
        root,
        lambda m: m["branches"].append(dict(entry(m, "f"), branch_id="../../outside/victim")),
    )
    refused(root, root / "s" / "branches.json", "'../../outside/victim' is not a valid identifier")
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.jsonl"]
    assert victim.read_bytes() == b"precious\n"


def test_a_parent_cycle(root: Path) -> None:
    edit(root, lambda m: entry(m, "main").update(parent_branch="f"))
    refused(root, root / "s" / "branches.json", "parent cycle 'main' -> 'f' -> 'main'")


def test_a_lost_manifest(root: Path) -> None:
    (root / "s" / "branches.json").unlink()
    checked = run(root, "verify")
    assert checked.returncode == 1
    assert f"{root}/s/main.jsonl:2: no branches.json" in checked.stdout
    assert "the branch manifest was lost" in checked.stdout
    shown = run(root, "show", "s")
    assert shown.returncode == 1
    assert "the branch manifest was lost" in shown.stderr


def test_a_deleted_branch_file(root: Path) -> None:
    (root / "s" / "main.jsonl").unlink()
    refused(root, root / "s" / "main.jsonl", "acknowledged events are missing")


def test_a_symlinked_session_directory(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (root / "s").rename(elsewhere)
    (root / "s").symlink_to(elsewhere)
    refused(root, root / "s", "symbolic link")
    checked = run(root, "verify", "s")
    assert checked.returncode == 1
    assert f"{root}/s:" in checked.stdout


def test_a_symlinked_branch_file(root: Path, tmp_path: Path) -> None:
    moved = tmp_path / "main.jsonl"
    (root / "s" / "main.jsonl").rename(moved)
    (root / "s" / "main.jsonl").symlink_to(moved)
    refused(root, root / "s" / "main.jsonl", "symbolic link")
