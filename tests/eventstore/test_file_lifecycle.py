"""The file store's side of issue 14: crash-safe deletes, a bounded session cache,
two syncs for a new session, and listing sessions without reading their logs."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from eventstore import BranchNotFound, FileEventStore, StorageError
from eventstore.file import FileOps

from ._file_helpers import FaultyOps, ev

#: The checkout, whatever the working directory.
PROJECT = str(Path(__file__).resolve().parents[2])

#: Builds s1 (main, a fork with its own events, a merge) and s2, then deletes s1
#: with a kill armed at the ``step``-th I/O call of the delete (``-1``: none).
_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from eventstore import EventRecord, FileEventStore
    from eventstore.file import FileOps

    STEPS = ("pwrite", "fsync", "syncfs", "ftruncate", "replace", "mkdir", "unlink",
             "rename", "rmdir", "open")

    class Killer(FileOps):
        armed = False
        count = 0

        def __init__(self, step):
            self.step = step

        def _tick(self):
            if not self.armed:
                return
            if self.count == self.step:
                os.kill(os.getpid(), signal.SIGKILL)
            self.count += 1

    for name in STEPS:
        def make(name):
            base = getattr(FileOps, name)
            def call(self, *args, **kwargs):
                self._tick()
                return base(self, *args, **kwargs)
            return call
        setattr(Killer, name, make(name))

    def ev(session, branch, seq):
        return EventRecord.new(session, branch, seq, "note", {"secret": "MARKER-" + session})

    async def main(root, step):
        ops = Killer(step)
        async with FileEventStore(root, ops=ops) as store:
            await store.append_batch([ev("s1", "main", n) for n in (1, 2, 3)])
            await store.create_branch("s1", "alt", fork_sequence=1)
            await store.append(ev("s1", "alt", 2))
            await store.create_branch("s1", "side")
            await store.append(ev("s1", "side", 4))
            await store.merge_branch("s1", "side", "main")
            await store.append(ev("s2", "main", 1))
            print("ready", flush=True)
            ops.armed = True
            assert await store.delete_session("s1")
            print("deleted", flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def _grep(root: Path, text: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text in p.read_bytes()]


def _run_child(root: Path, step: int) -> tuple[bool, bool]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), str(step)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": PROJECT},
        timeout=60,
        check=False,
    )
    lines = done.stdout.decode().split()
    assert "ready" in lines, done.stderr.decode()
    killed = done.returncode == -signal.SIGKILL
    assert killed or done.returncode == 0, done.stderr.decode()
    return killed, "deleted" in lines


async def test_delete_session_killed_at_every_step(tmp_path: Path) -> None:
    outcomes = []
    for step in range(50):
        root = tmp_path / str(step)
        killed, acknowledged = _run_child(root, step)
        async with FileEventStore(root) as store:
            main = await store.read("s1")
            gone = main == []
            outcomes.append(gone)
            if gone:
                assert await store.list_sessions() == ["s2"]
                assert await store.list_branches("s1") == []
                assert await store.read("s1", "alt") == []
                assert _grep(root, b"MARKER-s1") == [], "a deleted session left bytes behind"
            else:
                assert not acknowledged, "an acknowledged delete was undone"
                assert [r.sequence for r in main] == [1, 2, 3, 4]
                assert [r.sequence for r in await store.read("s1", "alt")] == [1, 2]
                assert await store.list_sessions() == ["s1", "s2"]
            assert [r.sequence for r in await store.read("s2")] == [1]
            # Whole or gone, the session takes writes again; a deleted id restarts at 1.
            await store.append(ev("s1", len(main) + 1))
        assert not [p for p in root.iterdir() if p.name.startswith(".deleted")]
        if not killed:
            break
    else:
        pytest.fail("the delete never finished")
    # Killed before the rename: whole; after it: gone, its remains removed on open.
    assert outcomes[0] is False and outcomes[-1] is True
    assert len(outcomes) >= 4


class _Unlink(FaultyOps):
    """Fails ``unlink`` on demand too."""

    def unlink(self, path: str, *, dir_fd: int | None = None) -> None:
        fault = self._check("unlink")
        if fault is not None:
            raise OSError(fault[0], os.strerror(fault[0]))
        super().unlink(path, dir_fd=dir_fd)


async def test_delete_branch_finishes_after_a_failed_unlink(tmp_path: Path) -> None:
    ops = _Unlink()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.append(ev("s1", 1))
        await store.create_branch("s1", "alt")
        await store.append(ev("s1", 2, branch="alt", data={"secret": "MARKER"}))
        ops.arm("unlink", errno.EIO)
        with pytest.raises(StorageError):
            await store.delete_branch("s1", "alt")
        # The manifest let go of it first: the branch is gone, its file not yet.
        with pytest.raises(BranchNotFound):
            await store.branch_info("s1", "alt")
    manifest = json.loads((tmp_path / "s1" / "branches.json").read_bytes())
    assert manifest["deleted"] == ["alt"]
    assert _grep(tmp_path, b"MARKER")
    async with FileEventStore(tmp_path) as store:
        assert [b.branch_id for b in await store.list_branches("s1")] == ["main"]
    assert _grep(tmp_path, b"MARKER") == []
    assert json.loads((tmp_path / "s1" / "branches.json").read_bytes())["deleted"] == []


async def test_delete_waits_for_a_pending_merge(tmp_path: Path) -> None:
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.append(ev("s1", 1))
        await store.create_branch("s1", "side")
        await store.append(ev("s1", 2, branch="side"))
        ops.gate = threading.Event()
        merging = asyncio.create_task(store.merge_branch("s1", "side", "main"))
        await asyncio.sleep(0.05)
        deleting = asyncio.create_task(store.delete_session("s1"))
        await asyncio.sleep(0.05)
        assert not merging.done() and not deleting.done()
        ops.gate.set()
        result = await merging
        assert result.merged_events == 1
        assert await deleting is True
        assert await store.read("s1") == []
        assert await store.list_sessions() == []
    # Only the root's own files stay: the lock and the feed's (which name no session now).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "feed.idx", "feed.streams"]
    assert b"s1" not in (tmp_path / "feed.streams").read_bytes()


async def test_session_cache_keeps_its_bound_under_a_burst(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, durability="write", max_cached_sessions=64) as store:
        await asyncio.gather(*(store.append(ev(f"s{n}", 1)) for n in range(600)))
        assert store.statistics().cached_sessions <= 64
        await asyncio.gather(*(store.head(f"s{n}") for n in range(600)))
        assert store.statistics().cached_sessions <= 64


async def test_a_new_session_costs_two_syncs(tmp_path: Path) -> None:
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        if not ops.has_syncfs():
            pytest.skip("syncfs is what makes it two")
        await store.append(ev("s0", 1))  # the root directory's own first sync aside
        before = ops.calls["fsync"] + ops.calls["syncfs"]
        await store.append(ev("s1", 1))
        assert ops.calls["fsync"] + ops.calls["syncfs"] - before <= 2
        before = ops.calls["fsync"] + ops.calls["syncfs"]
        await store.append(ev("s1", 2))
        # An append to it: the log and the feed index.
        assert ops.calls["fsync"] + ops.calls["syncfs"] - before == 2
    async with FileEventStore(tmp_path) as store:
        assert [r.sequence for r in await store.read("s1")] == [1, 2]


class _Opens(FileOps):
    def __init__(self) -> None:
        self.opened: list[str] = []

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        self.opened.append(path)
        return super().open(path, flags, mode, dir_fd=dir_fd)


async def test_listing_reads_no_log_once_summaries_are_fresh(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, durability="write") as store:
        for n in range(1000):
            await store.append_batch([ev(f"s{n:04}", 1), ev(f"s{n:04}", 2)])
        await store.create_branch("s0001", "alt")
        await store.append(ev("s0001", 3, branch="alt"))
    ops = _Opens()
    async with FileEventStore(tmp_path, ops=ops) as store:
        first = await store.sessions()
        ops.opened.clear()
        started = time.perf_counter()
        again = await store.sessions()
        elapsed = time.perf_counter() - started
        assert again == first
        assert [p for p in ops.opened if p.endswith(".jsonl")] == []
        assert (first[1].branches, first[1].events) == (2, 3)
        assert all(i.events == 2 for i in first if i.session_id != "s0001")
        # Appending makes a summary stale: listing reads that one log's tail.
        await store.append(ev("s0007", 3))
        ops.opened.clear()
        infos = {i.session_id: i for i in await store.sessions(prefix="s000")}
        assert infos["s0007"].events == 3
        assert [p.rpartition("/")[2] for p in ops.opened if p.endswith(".jsonl")] == ["main.jsonl"]
    print(f"\nlisting 1,000 sessions with fresh summaries: {elapsed * 1000:.1f} ms")
    assert elapsed < 10
