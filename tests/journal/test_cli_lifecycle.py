"""``eventstore close``, ``delete``, ``expire`` and ``sessions`` filters, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import EventRecord
from eventstore.file import FileEventStore

from .test_cli import TIMEOUT, _env, json_lines, ok, run


async def _populate(root: Path) -> None:
    async with FileEventStore(root) as store:
        for session, count in (("alpha", 3), ("alpine", 1), ("beta", 2)):
            await store.append_batch(
                [
                    EventRecord.new(session, "main", n, "note", {"secret": f"s3cr3t-{session}"})
                    for n in range(1, count + 1)
                ]
            )
        await store.create_branch("alpha", "alt", fork_sequence=1)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    asyncio.run(_populate(tmp_path / "store"))
    return tmp_path / "store"


def _grep(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_sessions_filters(root: Path) -> None:
    rows = json_lines(ok(root, "--json", "sessions", "--prefix", "alp"))
    assert [(r["session_id"], r["branches"], r["events"]) for r in rows] == [
        ("alpha", 2, 3),
        ("alpine", 1, 1),
    ]
    assert [
        r["session_id"] for r in json_lines(ok(root, "--json", "sessions", "--limit", "1"))
    ] == ["alpha"]
    assert json_lines(ok(root, "--json", "sessions", "--active-since", "1h")) == json_lines(
        ok(root, "--json", "sessions")
    )
    assert ok(root, "--json", "sessions", "--active-since", "2999-01-01T00:00") == ""
    lines = ok(root, "sessions", "--prefix", "be").splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [["beta", "1", "2"]]
    done = run(root, "sessions", "--active-since", "soon")
    assert done.returncode == 2 and b"expected a duration" in done.stderr


def test_close(root: Path) -> None:
    assert ok(root, "close", "beta") == "closed beta/main at sequence 2\n"
    info = json.loads(ok(root, "--json", "close", "alpha", "-b", "alt"))
    assert (info["branch_id"], info["closed"], info["head"]) == ("alt", True, 1)
    done = run(root, "close", "alpha", "-b", "nope")
    assert done.returncode == 2 and b"not found" in done.stderr

    async def append() -> None:
        async with FileEventStore(root) as store:
            await store.append(EventRecord.new("beta", "main", 3, "note"))

    with pytest.raises(Exception, match="closed"):
        asyncio.run(append())


def test_delete_with_yes_erases_every_byte(root: Path) -> None:
    assert _grep(root, "s3cr3t-alpha")
    assert ok(root, "delete", "alpha", "--yes") == "deleted alpha\n"
    assert _grep(root, "s3cr3t-alpha") == []
    assert [r["session_id"] for r in json_lines(ok(root, "--json", "sessions"))] == [
        "alpine",
        "beta",
    ]
    assert json.loads(ok(root, "--json", "delete", "alpha", "--yes")) == {
        "session_id": "alpha",
        "deleted": False,
    }


def test_delete_off_a_terminal_refuses_without_yes(root: Path) -> None:
    done = run(root, "delete", "beta", stdin=b"y\n")
    assert done.returncode == 2
    assert b"refusing to delete without --yes" in done.stderr
    assert _grep(root, "s3cr3t-beta")


@pytest.mark.parametrize(("answer", "deleted"), [(b"y\n", True), (b"n\n", False)])
def test_delete_asks_on_a_terminal(root: Path, answer: bytes, deleted: bool) -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "journal", "--root", str(root), "delete", "beta"],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        os.write(leader, answer)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        os.close(leader)
        os.close(follower)
    assert b"delete session 'beta': 1 branch, 2 events?" in err
    assert process.returncode == (0 if deleted else 2), err
    assert bool(_grep(root, "s3cr3t-beta")) is not deleted


def test_expire(root: Path) -> None:
    assert ok(root, "expire", "--idle-for", "30d").splitlines() == ["0 sessions expired"]
    dry = ok(root, "expire", "--idle-for", "0s", "--dry-run").splitlines()
    assert [line.split()[:3] for line in dry[:-1]] == [
        ["would", "delete", "alpha"],
        ["would", "delete", "alpine"],
        ["would", "delete", "beta"],
    ]
    assert dry[-1] == "3 sessions idle for 0:00:00 or longer"
    assert len(json_lines(ok(root, "--json", "sessions"))) == 3
    rows = json_lines(ok(root, "--json", "expire", "--idle-for", "0s"))
    assert [r["session_id"] for r in rows] == ["alpha", "alpine", "beta"]
    assert ok(root, "sessions").splitlines()[1:] == []
    assert _grep(root, "s3cr3t") == []
    done = run(root, "expire", "--idle-for", "30 days")
    assert done.returncode == 2 and b"expected a duration" in done.stderr
    done = run(root, "expire")
    assert done.returncode == 2 and b"--idle-for" in done.stderr
