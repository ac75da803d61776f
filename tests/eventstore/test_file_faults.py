"""A failed write or sync (ENOSPC, EIO) loses nothing acknowledged and leaves no trace;
concurrent appends share syncs (group commit)."""

from __future__ import annotations

import asyncio
import errno
import threading
from pathlib import Path

import pytest

from eventstore import FileEventStore, StorageError

from ._file_helpers import FaultyOps, bare, ev, lines_of

STEPS = [
    pytest.param("pwrite", False, id="write"),
    pytest.param("pwrite", True, id="short-write"),
    pytest.param("fsync", False, id="fsync"),
]
CODES = [pytest.param(errno.ENOSPC, id="ENOSPC"), pytest.param(errno.EIO, id="EIO")]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize(("step", "short"), STEPS)
@pytest.mark.parametrize("batch", [1, 3], ids=["append", "batch"])
async def test_failed_append_leaves_no_partial_line(
    tmp_path: Path, step: str, short: bool, code: int, batch: int
) -> None:
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        written = await store.append_batch([ev("s1", n) for n in (1, 2, 3)])
        before = lines_of(tmp_path / "s1" / "main.jsonl")
        ops.arm(step, code, short=short)
        attempt = [ev("s1", n) for n in range(4, 4 + batch)]
        with pytest.raises(StorageError) as info:
            await store.append_batch(attempt)
        assert info.value.errno == code
        assert lines_of(tmp_path / "s1" / "main.jsonl") == before
        assert await store.head("s1") == 3
        assert await store.read("s1") == written
        # The store stays usable: the same events go in on the next try.
        retried = await store.append_batch(attempt)
        assert bare(retried) == attempt
        # The failed attempt's positions are never reused: the retry's come after.
        assert retried[0].position > written[-1].position + batch - 1
        assert await store.head("s1") == 3 + batch
    async with FileEventStore(tmp_path) as store:
        assert await store.read("s1") == written + retried


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize(("step", "short"), [*STEPS, pytest.param("syncfs", False, id="syncfs")])
async def test_failed_first_append_of_a_new_session(
    tmp_path: Path, step: str, short: bool, code: int
) -> None:
    # The first append writes the manifest, then creates the branch file; fail
    # each write or sync along the way in turn, until one attempt meets none.
    failures = 0
    for skip in range(20):
        root = tmp_path / str(skip)
        ops = FaultyOps()
        record = ev("s1", 1)
        async with FileEventStore(root, ops=ops) as store:
            ops.arm(step, code, skip=skip, short=short)
            try:
                await store.append(record)
            except StorageError as exc:
                failures += 1
                assert exc.errno == code
                assert await store.head("s1") == 0
                assert await store.read("s1") == []
                assert bare(await store.append(record)) == record
            else:
                break
        async with FileEventStore(root) as store:
            assert bare(await store.read("s1")) == [record]
            assert await store.list_sessions() == ["s1"]
    # manifest and branch file: two writes; where syncfs exists, two syncs: one
    # syncfs for the directory, events and manifest, one for the rename (no fsync).
    assert failures >= {"pwrite": 2, "fsync": 0, "syncfs": 2}[step]


@pytest.mark.parametrize("code", CODES)
async def test_failed_syncfs_fails_the_whole_round(tmp_path: Path, code: int) -> None:
    ops = FaultyOps()
    sessions = [f"s{n}" for n in range(8)]
    async with FileEventStore(tmp_path, ops=ops) as store:
        if not ops.has_syncfs():
            pytest.fail("syncfs is expected on the Linux test machines")
        for session in sessions:
            await store.append(ev(session, 1))
        ops.gate = threading.Event()
        tasks = [asyncio.create_task(store.append(ev(s, 2))) for s in sessions]
        # One loop turn lets every task hand its write to the I/O thread, which
        # waits at the gate; then the round holds all eight files.
        await asyncio.sleep(0)
        ops.arm("syncfs", code)
        ops.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert ops.calls["syncfs"] >= 1
        failed = [r for r in results if isinstance(r, StorageError)]
        assert failed and all(r.errno == code for r in failed)
        for session, result in zip(sessions, results, strict=True):
            expected = 1 if isinstance(result, StorageError) else 2
            assert await store.head(session) == expected
            assert len(lines_of(tmp_path / session / "main.jsonl")) == expected
        for session, result in zip(sessions, results, strict=True):
            if isinstance(result, StorageError):
                await store.append(ev(session, 2))
        assert [await store.head(s) for s in sessions] == [2] * len(sessions)


async def test_writes_queued_behind_a_failed_one_fail_with_it(tmp_path: Path) -> None:
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.append(ev("s1", 1))
        ops.gate = threading.Event()
        ops.arm("pwrite", errno.EIO)
        first = asyncio.create_task(store.append(ev("s1", 2)))
        await asyncio.sleep(0)  # its write is with the I/O thread, held at the gate
        second = asyncio.create_task(store.append(ev("s1", 3)))
        await asyncio.sleep(0)
        ops.gate.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert all(isinstance(r, StorageError) for r in results)
        assert await store.head("s1") == 1
        assert len(lines_of(tmp_path / "s1" / "main.jsonl")) == 1
        await store.append(ev("s1", 2))
        assert await store.head("s1") == 2


async def test_group_commit_shares_syncs_across_sessions(tmp_path: Path) -> None:
    ops = FaultyOps()
    sessions = [f"s{n}" for n in range(50)]
    async with FileEventStore(tmp_path, ops=ops) as store:
        for session in sessions:
            await store.append(ev(session, 1))
        before = store.statistics()
        ops.gate = threading.Event()
        tasks = [asyncio.create_task(store.append(ev(s, 2))) for s in sessions]
        await asyncio.sleep(0)  # every task has queued its write
        ops.gate.set()
        await asyncio.gather(*tasks)
        after = store.statistics()
        assert after.writes - before.writes == 50
        # At most the round that was already running plus one for the rest.
        assert after.syncs - before.syncs <= 2
        assert after.rounds - before.rounds <= 2


async def test_group_commit_pipelines_one_branch(tmp_path: Path) -> None:
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.append(ev("s1", 1))
        before = store.statistics()
        ops.gate = threading.Event()
        tasks = [asyncio.create_task(store.append(ev("s1", n))) for n in range(2, 22)]
        await asyncio.sleep(0)
        ops.gate.set()
        await asyncio.gather(*tasks)
        after = store.statistics()
        assert after.syncs - before.syncs <= 2
        assert [r.sequence for r in await store.read("s1")] == list(range(1, 22))
