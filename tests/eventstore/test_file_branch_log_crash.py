"""The branch log across a kill at every step of a fork, and across a full or failing disk.

A kill is simulated in the process: from the chosen system call on, every call
that would change the disk raises instead (what the process did before stays,
as the page cache keeps it across a real kill). The root is then opened
afresh: every branch acknowledged before is there with its head, the fork cut
short is there whole or not at all, ``verify`` finds no damage, and the
store takes the next fork.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from eventstore import FileEventStore, StorageError
from eventstore.file import FileOps, verify
from eventstore.file._branch_log import BRANCH_LOG, COMPACT_AFTER, LOG_FROM

from ._file_helpers import FaultyOps, ev


class _Killed(BaseException):
    """The process died here (a ``BaseException``: nothing may handle it as an error)."""


class KillOps(FileOps):
    """Dies at the ``at``-th call that changes the disk; ``torn``: that write is half done."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.count = 0
        self.torn = False
        self.dead = False

    def _change(self) -> None:
        if self.dead:
            raise _Killed
        if self.at is None:
            return
        self.count += 1
        if self.count == self.at:
            self.dead = True
            raise _Killed

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        if flags & os.O_CREAT:
            self._change()
        return super().open(path, flags, mode, dir_fd=dir_fd)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        try:
            self._change()
        except _Killed:
            if self.torn and not self.count < (self.at or 0) and len(data) > 1:
                super().pwrite(fd, data[: len(data) // 2], offset)
            raise
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._change()
        super().fsync(fd)

    def syncfs(self, fd: int) -> None:
        self._change()
        super().syncfs(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._change()
        super().ftruncate(fd, size)

    def mkdir(self, path: str, mode: int = 0o700, *, dir_fd: int | None = None) -> None:
        self._change()
        super().mkdir(path, mode, dir_fd=dir_fd)

    def replace(self, src: str, dst: str, *, dir_fd: int) -> None:
        self._change()
        super().replace(src, dst, dir_fd=dir_fd)

    def unlink(self, path: str, *, dir_fd: int | None = None) -> None:
        self._change()
        super().unlink(path, dir_fd=dir_fd)

    def rename(self, src: str, dst: str, *, dir_fd: int) -> None:
        self._change()
        super().rename(src, dst, dir_fd=dir_fd)


async def _template(root: Path, branches: int) -> dict[str, int]:
    """Session ``s`` of ``branches`` branches (main 1..3, forks at 3); their heads."""
    async with FileEventStore(root) as store:
        await store.append_batch([ev("s", n) for n in (1, 2, 3)])
        for n in range(1, branches):
            await store.create_branch("s", f"b{n}")
        await store.append(ev("s", 4, "b1"))
        return {info.branch_id: info.head for info in await store.list_branches("s")}


async def _fork_steps(template: Path, tmp: Path) -> tuple[int, bool]:
    """How many disk-changing calls the next fork makes, and whether it folds the log."""
    root = tmp / "dry"
    shutil.copytree(template, root)
    ops = KillOps()
    ops.at = 10**9
    async with FileEventStore(root, ops=ops) as store:
        await store.head("s")
        ops.count = 0
        await store.create_branch("s", "x")
        steps = ops.count
    folded = (root / "s" / BRANCH_LOG).stat().st_size == 0
    return steps, folded


async def _kill_every_step(tmp_path: Path, branches: int, *, folds: bool, torn: bool) -> None:
    template = tmp_path / "template"
    heads = await _template(template, branches)
    steps, folded = await _fork_steps(template, tmp_path)
    assert folded == folds
    assert steps >= (5 if folds else 2)
    outcomes = set()
    for at in range(1, steps + 1):
        root = tmp_path / f"kill{at}"
        shutil.copytree(template, root)
        ops = KillOps()
        ops.torn = torn
        async with FileEventStore(root, ops=ops) as store:
            await store.head("s")
            ops.at = at
            with pytest.raises(_Killed):
                await store.create_branch("s", "x")
        # The process is gone; another opens the root.
        report = verify(root)
        async with FileEventStore(root) as store:
            found = {info.branch_id: info.head for info in await store.list_branches("s")}
            made = found.pop("x", None)
            assert found == heads, f"killed at step {at}"
            assert made in (None, 3)
            outcomes.add(made)
            await store.create_branch("s", "y", from_branch="b1")
            assert (await store.read("s", "y"))[-1].sequence == 4
        async with FileEventStore(root) as store:
            assert (await store.branch_info("s", "y")).head == 4
        assert verify(root).ok, (at, verify(root).damage)
        if not torn:
            assert report.ok, (at, report.damage)
    # A kill after the line reached the file and before its sync keeps it (the page
    # cache survives a process kill); one before the write loses it.
    assert outcomes == {None, 3}


@pytest.mark.slow
async def test_a_kill_at_every_step_of_a_logged_fork(tmp_path: Path) -> None:
    await _kill_every_step(tmp_path, LOG_FROM + 2, folds=False, torn=False)


@pytest.mark.slow
async def test_a_kill_mid_write_leaves_a_torn_line_that_is_cut(tmp_path: Path) -> None:
    await _kill_every_step(tmp_path, LOG_FROM + 2, folds=False, torn=True)


@pytest.mark.slow
async def test_a_kill_at_every_step_of_folding_the_log(tmp_path: Path) -> None:
    # LOG_FROM branches in the manifest, then COMPACT_AFTER logged: the next fork folds.
    await _kill_every_step(tmp_path, LOG_FROM + COMPACT_AFTER, folds=True, torn=False)


async def test_a_line_written_but_not_synced_is_either_there_or_not(tmp_path: Path) -> None:
    # The kill between the write and the sync, by hand: the line whole, or nothing.
    heads = await _template(tmp_path, LOG_FROM + 2)
    log = tmp_path / "s" / BRANCH_LOG
    good = log.read_bytes()
    async with FileEventStore(tmp_path) as store:
        await store.create_branch("s", "x")
    whole = log.read_bytes()
    for content, expected in ((good, None), (whole, 3)):
        log.write_bytes(content)
        async with FileEventStore(tmp_path) as store:
            found = {info.branch_id: info.head for info in await store.list_branches("s")}
            assert found.pop("x", None) == expected
            assert found == heads


# -- a full or failing disk (the FileOps seam) ---------------------------------------------

CODES = [pytest.param(errno.ENOSPC, id="ENOSPC"), pytest.param(errno.EIO, id="EIO")]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize(("step", "short"), [("pwrite", False), ("pwrite", True), ("fsync", False)])
async def test_a_failed_log_write_leaves_no_branch_and_no_partial_line(
    tmp_path: Path, step: str, short: bool, code: int
) -> None:
    heads = await _template(tmp_path, LOG_FROM + 2)
    log = tmp_path / "s" / BRANCH_LOG
    before = log.read_bytes()
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.head("s")
        ops.arm(step, code, short=short)
        with pytest.raises(StorageError) as info:
            await store.create_branch("s", "x")
        assert info.value.errno == code
        assert log.read_bytes() == before
        assert {i.branch_id: i.head for i in await store.list_branches("s")} == heads
        # The store goes on: the same fork succeeds now.
        assert (await store.create_branch("s", "x")).head == 3
    async with FileEventStore(tmp_path) as store:
        assert (await store.branch_info("s", "x")).head == 3
    assert verify(tmp_path).ok


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("skip", [0, 1, 2])
async def test_a_failed_fold_keeps_every_branch(tmp_path: Path, code: int, skip: int) -> None:
    heads = await _template(tmp_path, LOG_FROM + COMPACT_AFTER)
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.head("s")
        ops.arm("fsync", code, skip=skip)
        try:
            await store.create_branch("s", "x")
        except StorageError as exc:
            assert exc.errno == code
    async with FileEventStore(tmp_path) as store:
        found = {info.branch_id: info.head for info in await store.list_branches("s")}
        assert found.pop("x", 3) == 3
        assert found == heads
    assert verify(tmp_path).ok
    # Folded, or not yet: the manifest names every logged line's branch or none of them.
    manifest = json.loads((tmp_path / "s" / "branches.json").read_bytes())
    assert manifest["log_lines"] in (0, COMPACT_AFTER)
