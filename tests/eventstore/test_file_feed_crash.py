"""The feed index against a kill at every write and sync step.

A child process writes a new session, batches, concurrent appends across two
sessions (rounds touching several files), a fork and a merge, with a SIGKILL
armed at its ``step``-th system call. After the kill the reopened store must
hold an index and logs that agree: ``read_feed`` returns exactly the records
the logs hold (each branch's own records, once, positions increasing), every
acknowledged record with the position it was acknowledged with, and new
appends get positions above every position on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eventstore import FileEventStore
from eventstore._codec import decode_record

from ._file_helpers import ev

_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    from eventstore import EventRecord, FileEventStore
    from eventstore.file import FileOps

    STEPS = ("pwrite", "fsync", "syncfs", "ftruncate", "replace", "mkdir", "unlink")

    class Killer(FileOps):
        count = 0

        def __init__(self, step, torn):
            self.step, self.torn = step, torn

        def _tick(self, name, args):
            if self.count == self.step:
                if name == "pwrite" and self.torn and len(args[1]) > 1:
                    FileOps.pwrite(self, args[0], args[1][: len(args[1]) // 2], args[2])
                os.kill(os.getpid(), signal.SIGKILL)
            self.count += 1

    for name in STEPS:
        def make(name):
            base = getattr(FileOps, name)
            def call(self, *args, **kwargs):
                self._tick(name, args)
                return base(self, *args, **kwargs)
            return call
        setattr(Killer, name, make(name))

    def ev(session, branch, seq):
        return EventRecord.new(session, branch, seq, "message", {"n": seq, "on": branch})

    def acked(records):
        for r in records:
            print(json.dumps([r.session_id, r.branch_id, r.sequence, r.position]), flush=True)

    async def main(root, step, torn):
        async with FileEventStore(root, ops=Killer(step, torn)) as store:
            acked([await store.append(ev("s1", "main", 1))])
            acked(await store.append_batch([ev("s1", "main", n) for n in (2, 3, 4)]))
            results = await asyncio.gather(
                store.append_batch([ev("s1", "main", 5), ev("s1", "main", 6)]),
                store.append_batch([ev("s2", "main", 1)]),
                store.append_next([ev("s1", "main", 1)]),
                store.append_next([ev("s2", "main", 1), ev("s2", "main", 2)]),
                return_exceptions=True,
            )
            for result in results:
                if not isinstance(result, BaseException):
                    acked(result)
            await store.create_branch("s1", "side")
            acked(await store.append_next([ev("s1", "side", 1), ev("s1", "side", 2)]))
            await store.merge_branch("s1", "side", "main")
            acked(await store.read("s1", "main", 8))
            print("done", flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "torn"))
    """
)

PROJECT = str(Path(__file__).resolve().parents[2])


def _run_child(root: Path, step: int, torn: bool) -> tuple[bool, list[list[object]]]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), str(step), "torn" if torn else ""],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": PROJECT},
        timeout=60,
        check=False,
    )
    killed = done.returncode == -signal.SIGKILL
    assert killed or done.returncode == 0, done.stderr.decode()
    acked = [json.loads(line) for line in done.stdout.decode().splitlines() if line != "done"]
    return killed, acked


def _positions_on_disk(root: Path) -> list[int]:
    """Every position written in any branch file (torn files aside)."""
    found = []
    for path in root.glob("*/*.jsonl"):
        for line in path.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n"):
                found.append(decode_record(line).position)
    return found


async def _check(root: Path, acked: list[list[object]]) -> None:
    async with FileEventStore(root) as store:
        feed = await store.read_feed()
        positions = [r.position for r in feed]
        assert positions == sorted(set(positions)), "positions repeat or go back"
        assert await store.feed_head() == (positions[-1] if positions else 0)
        # The feed holds exactly the records the logs hold: each branch's own ones.
        own = []
        for session in await store.list_sessions():
            for info in await store.list_branches(session):
                own += [
                    (r.session_id, r.branch_id, r.sequence, r.position)
                    for r in await store.read(session, info.branch_id, info.fork_sequence + 1)
                    if r.branch_id == info.branch_id
                ]
        assert sorted((r.session_id, r.branch_id, r.sequence, r.position) for r in feed) == sorted(
            own
        )
        # Every acknowledged record is there, with the position it was acknowledged with.
        held = {(r.session_id, r.branch_id, r.sequence): r.position for r in feed}
        for session, branch, sequence, position in acked:
            assert held.get((session, branch, sequence)) == position, (session, branch, sequence)
        # Positions are never given again, not even those of records a kill left on disk.
        on_disk = _positions_on_disk(root)
        new = await store.append(ev("s3", 1))
        assert new.position > max([0, *on_disk])
        assert (await store.read_feed(positions[-1] if positions else 0)) == [new]
    async with FileEventStore(root, read_only=True) as reader:
        assert [r.position for r in await reader.read_feed()] == [*positions, new.position]


async def _kill_at_every_step(tmp_path: Path, torn: bool) -> int:
    for step in range(400):
        root = tmp_path / f"{step}"
        killed, acked = _run_child(root, step, torn)
        if root.exists():
            await _check(root, acked)
        if not killed:
            return step
    pytest.fail("the child never finished")


async def test_feed_index_and_logs_agree_after_a_kill_at_every_step(tmp_path: Path) -> None:
    assert await _kill_at_every_step(tmp_path, torn=False) >= 20


@pytest.mark.slow
async def test_feed_index_and_logs_agree_after_a_torn_write_at_every_step(tmp_path: Path) -> None:
    assert await _kill_at_every_step(tmp_path, torn=True) >= 20
