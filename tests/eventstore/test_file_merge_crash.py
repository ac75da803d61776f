"""A merge into a branch without a file (the implicit ``main`` of a session whose
events live on a fork, a fork without events of its own), killed at every write and
sync step: the next open completes or undoes it, and nothing acknowledged is cut."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eventstore import FileEventStore, StorageError

from ._file_helpers import FaultyOps, ev

#: The child builds a session whose merge target has no file, then merges with a
#: kill armed at the ``step``-th write or sync call of the merge (``-1``: none).
_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys
    from eventstore import EventRecord, FileEventStore
    from eventstore.file import FileOps

    STEPS = ("pwrite", "fsync", "syncfs", "ftruncate", "replace", "mkdir", "unlink")

    class Killer(FileOps):
        armed = False
        count = 0

        def __init__(self, step, torn):
            self.step, self.torn = step, torn

        def _tick(self, name, args):
            if not self.armed:
                return
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

    def ev(branch, seq):
        return EventRecord.new("s1", branch, seq, "message", {"on": branch, "n": seq})

    def legacy_root(root, branch):
        # What an older store could hold: a root other than main, main named nowhere.
        path = f"{root}/s1/branches.json"
        with open(path) as file:
            manifest = json.load(file)
        manifest["branches"] = [b for b in manifest["branches"] if b["branch_id"] != "main"]
        for meta in manifest["branches"]:
            if meta["branch_id"] == branch:
                meta["parent_branch"], meta["fork_sequence"] = None, 0
        with open(path, "w") as file:
            json.dump(manifest, file)

    async def main(root, scenario, step, torn):
        ops = Killer(step, torn)
        if scenario == "implicit-main":
            async with FileEventStore(root) as store:
                await store.create_branch("s1", "trunk")
                await store.append_batch([ev("trunk", n) for n in (1, 2)])
            legacy_root(root, "trunk")
        async with FileEventStore(root, ops=ops) as store:
            if scenario == "implicit-main":
                # main is named nowhere: the session's only root is "trunk".
                await store.create_branch("s1", "side", from_branch="trunk")
                await store.append_batch([ev("side", n) for n in (3, 4, 5)])
                source, target = "side", "main"
            elif scenario == "named-main":
                # main is named by the fork made from it, but has no file.
                await store.create_branch("s1", "side")
                await store.append_batch([ev("side", n) for n in (1, 2, 3)])
                source, target = "side", "main"
            else:
                await store.append_batch([ev("main", n) for n in (1, 2)])
                await store.create_branch("s1", "empty")
                await store.create_branch("s1", "side")
                await store.append_batch([ev("side", n) for n in (3, 4, 5)])
                source, target = "side", "empty"
            print("ready", flush=True)
            ops.armed = True
            await store.merge_branch("s1", source, target)
            print("merged", flush=True)
            ops.armed = False

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "torn"))
    """
)

#: The checkout, whatever the working directory.
PROJECT = str(Path(__file__).resolve().parents[2])

#: scenario -> (source, target, the target's events before the merge, the source's own)
SCENARIOS = {
    "implicit-main": ("side", "main", [], [3, 4, 5]),
    "named-main": ("side", "main", [], [1, 2, 3]),
    "fork": ("side", "empty", [1, 2], [3, 4, 5]),
}


def _run_child(root: Path, scenario: str, step: int, torn: bool) -> tuple[bool, bool]:
    """Run one merge with a kill at ``step``: ``(killed, merge acknowledged)``."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), scenario, str(step), "torn" if torn else ""],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": PROJECT},
        timeout=60,
        check=False,
    )
    lines = done.stdout.decode().split()
    assert "ready" in lines, done.stderr.decode()
    killed = done.returncode == -signal.SIGKILL
    assert killed or done.returncode == 0, done.stderr.decode()
    return killed, "merged" in lines


async def _check_after_kill(root: Path, scenario: str, acknowledged: bool) -> None:
    source, target, before, own = SCENARIOS[scenario]
    async with FileEventStore(root) as store:
        records = await store.read("s1", target)
        info = await store.branch_info("s1", source)
        merged = [
            r.metadata["merged_from"]["sequence"] for r in records if "merged_from" in r.metadata
        ]
        assert [r.sequence for r in records] == list(range(1, len(records) + 1))
        if info.merged_into is None:
            assert not acknowledged, "an acknowledged merge was undone"
            assert [r.sequence for r in records] == before
            assert merged == []
        else:
            assert info.merged_into == target
            assert merged == own, f"merge marked done, the target holds {merged}"
        manifest = json.loads((root / "s1" / "branches.json").read_bytes())
        assert manifest.get("pending_merge") is None
        # The branches take appends again, and a reopen keeps every one of them.
        head = len(records)
        appended = await store.append_batch(
            [ev("s1", n, branch=target) for n in range(head + 1, head + 4)]
        )
        if info.merged_into is None:
            again = await store.merge_branch("s1", source, target)
            assert again.merged_events == len(own)
    async with FileEventStore(root) as store:
        records = await store.read("s1", target)
        assert records[head : head + 3] == appended
        assert (await store.branch_info("s1", source)).merged_into == target
        assert [
            r.metadata["merged_from"]["sequence"] for r in records if "merged_from" in r.metadata
        ] == own


async def _kill_at_every_step(tmp_path: Path, scenario: str, torn: bool) -> int:
    """Kill at step 0, 1, 2... until the merge runs through; the number of kills."""
    for step in range(100):
        root = tmp_path / f"{scenario}-{step}"
        killed, acknowledged = _run_child(root, scenario, step, torn)
        await _check_after_kill(root, scenario, acknowledged)
        if not killed:
            return step
    pytest.fail("the merge never finished")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_merge_into_a_fileless_target_killed_at_every_step(
    tmp_path: Path, scenario: str
) -> None:
    kills = await _kill_at_every_step(tmp_path, scenario, torn=False)
    # The intent (manifest write, sync, rename, directory sync), the events (write,
    # sync, directory sync of the new file), the intent cleared: at least ten steps.
    assert kills >= 10


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_merge_into_a_fileless_target_torn_at_every_write(
    tmp_path: Path, scenario: str
) -> None:
    # As above, but a write struck by the kill leaves its first half on disk.
    assert await _kill_at_every_step(tmp_path, scenario, torn=True) >= 10


@pytest.mark.parametrize("appends", [1, 3])
async def test_appends_after_an_intent_that_could_not_be_undone_survive(
    tmp_path: Path, appends: int
) -> None:
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.create_branch("s1", "side")
        own = await store.append_batch([ev("s1", n, branch="side") for n in (1, 2)])
        # pwrite: the intent's manifest, the feed's stream table and index, then
        # the events (fails). fsync: the intent's temp file and directory, the
        # cut-backs of the failed write (log, then feed index), then the temp
        # file of the manifest that would undo the intent (fails).
        ops.arm("pwrite", errno.ENOSPC, skip=3)
        ops.arm("fsync", errno.EIO, skip=4)
        with pytest.raises(StorageError):
            await store.merge_branch("s1", "side", "main")
        manifest = json.loads((tmp_path / "s1" / "branches.json").read_bytes())
        assert manifest["pending_merge"]["target"] == "main"
        acked = [await store.append(ev("s1", n)) for n in range(1, appends + 1)]
    async with FileEventStore(tmp_path) as store:
        assert await store.read("s1") == acked
        assert await store.read("s1", "side") == own
        assert (await store.branch_info("s1", "side")).merged_into is None
    assert not (tmp_path / "s1" / "main.jsonl.torn").exists()


async def test_first_call_after_a_kill_before_the_target_file_existed(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as store:
        await store.create_branch("s1", "side")
        own = await store.append_batch([ev("s1", n, branch="side") for n in (1, 2)])
    # What a kill right after the intent was recorded leaves: no main.jsonl at all.
    manifest_path = tmp_path / "s1" / "branches.json"
    manifest = json.loads(manifest_path.read_bytes())
    for meta in manifest["branches"]:
        if meta["branch_id"] == "side":
            meta["merged_into"] = "main"
    manifest["pending_merge"] = {
        "source": "side",
        "target": "main",
        "target_head": 0,
        "target_size": 0,
        "count": 2,
    }
    manifest_path.write_text(json.dumps(manifest))
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 0
        assert (await store.branch_info("s1", "side")).merged_into is None
        first = await store.append_batch([ev("s1", n) for n in (1, 2, 3)])
    async with FileEventStore(tmp_path) as store:
        assert await store.read("s1") == first
        assert await store.read("s1", "side") == own
        assert (await store.branch_info("s1", "side")).merged_into is None
    assert not (tmp_path / "s1" / "main.jsonl.torn").exists()
