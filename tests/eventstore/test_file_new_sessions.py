"""New sessions created together share their syncs, and keep the feed in position order.

The I/O thread is held at a gate while work queues behind it, so what goes
into one round is chosen by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path

import pytest

from eventstore import FileEventStore, StorageError

from ._file_helpers import FaultyOps, ev


class _Held(FaultyOps):
    """Holds the first ``pwrite`` after :meth:`hold` at a gate and says when it got there."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = threading.Event()
        self._holding = False

    def hold(self) -> None:
        self.gate = threading.Event()
        self.reached.clear()
        self._holding = True

    #: A file whose writes fail with ENOSPC (its path ends so).
    full: str | None = None

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self._holding:
            self._holding = False
            self.reached.set()
        if self.full is not None and os.readlink(f"/proc/self/fd/{fd}").endswith(self.full):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().pwrite(fd, data, offset)

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()
        self.gate = None


async def _held(store: FileEventStore, ops: _Held, session: str, seq: int) -> asyncio.Task[object]:
    """An append to ``session`` whose write holds the I/O thread."""
    ops.hold()
    task: asyncio.Task[object] = asyncio.create_task(store.append(ev(session, seq)))
    assert await asyncio.to_thread(ops.reached.wait, 30)
    return task


async def _paged_feed(store: FileEventStore) -> list[int]:
    positions: list[int] = []
    after = 0
    while page := await asyncio.wait_for(store.read_feed(after, 1), 10):
        positions.append(page[0].position)
        after = page[0].position
    return positions


async def test_a_new_session_in_the_round_of_older_appends_keeps_feed_order(
    tmp_path: Path,
) -> None:
    ops = _Held()
    async with FileEventStore(tmp_path, ops=ops) as store:
        for session in ("a", "b"):
            await store.append(ev(session, 1))
        await store.head("new")  # loaded: its first append gives positions at once
        first = await _held(store, ops, "a", 2)
        # Queued in this order behind the held round: b's position is below new's.
        older = asyncio.create_task(store.append(ev("b", 2)))
        await asyncio.sleep(0)
        created = asyncio.create_task(store.append(ev("new", 1)))
        await asyncio.sleep(0)
        ops.release()
        records = await asyncio.gather(first, older, created)
        assert records[1].position < records[2].position
        positions = await _paged_feed(store)
        assert positions == sorted(positions)
        assert len(positions) == 5
    async with FileEventStore(tmp_path) as store:
        assert await _paged_feed(store) == positions


async def test_concurrent_new_sessions_share_their_syncs(tmp_path: Path) -> None:
    ops = _Held()
    sessions = [f"n{i}" for i in range(20)]
    async with FileEventStore(tmp_path, ops=ops) as store:
        if not ops.has_syncfs():
            pytest.skip("group creation syncs with syncfs")
        await store.append(ev("a", 1))
        for session in sessions:
            await store.head(session)
        before = store.statistics().syncs
        held = await _held(store, ops, "a", 2)
        tasks = [asyncio.create_task(store.append(ev(s, 1))) for s in sessions]
        await asyncio.sleep(0)
        ops.release()
        records = await asyncio.gather(held, *tasks)
        # One at a time, 20 sessions take 40 syncs; in groups, two a group.
        assert store.statistics().syncs - before <= 8
        assert await store.list_sessions() == sorted(["a", *sessions])
    async with FileEventStore(tmp_path) as store:
        for session, record in zip(sessions, records[1:], strict=True):
            assert await store.read(session) == [record]
        positions = await _paged_feed(store)
        assert positions == sorted(positions) and len(positions) == 22


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
@pytest.mark.parametrize("skip", [0, 1])
async def test_a_failed_sync_fails_its_group_and_leaves_no_session(
    tmp_path: Path, code: int, skip: int
) -> None:
    ops = _Held()
    sessions = [f"n{i}" for i in range(6)]
    async with FileEventStore(tmp_path, ops=ops) as store:
        if not ops.has_syncfs():
            pytest.skip("group creation syncs with syncfs")
        await store.append(ev("a", 1))
        for session in sessions:
            await store.head(session)
        held = await _held(store, ops, "a", 2)
        # The first creation goes alone, the rest wait for it and go as one group.
        tasks = [asyncio.create_task(store.append(ev(s, 1))) for s in sessions]
        await asyncio.sleep(0)
        # The first group's two syncfs (the held round fsyncs); then the second group's.
        ops.arm("syncfs", code, skip=2 + skip)
        ops.release()
        await held
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = [s for s, r in zip(sessions, results, strict=True) if isinstance(r, BaseException)]
        assert failed == sessions[1:]
        assert all(isinstance(r, StorageError) and r.errno == code for r in results[1:])
        for session in failed:
            assert await store.head(session) == 0
        assert await store.list_sessions() == ["a", "n0"]
        feed = await store.read_feed()
        assert [r.session_id for r in feed] == ["a", "a", "n0"]
        # The same events go in on the next try.
        again = [await store.append(ev(s, 1)) for s in failed]
    async with FileEventStore(tmp_path) as store:
        for session, record in zip(failed, again, strict=True):
            assert await store.read(session) == [record]
        assert len(await store.read_feed()) == 3 + len(failed)


async def test_a_failed_write_fails_only_its_own_session(tmp_path: Path) -> None:
    ops = _Held()
    sessions = [f"n{i}" for i in range(4)]
    async with FileEventStore(tmp_path, ops=ops) as store:
        if not ops.has_syncfs():
            pytest.skip("group creation syncs with syncfs")
        await store.append(ev("a", 1))
        for session in sessions:
            await store.head(session)
        held = await _held(store, ops, "a", 2)
        tasks = [asyncio.create_task(store.append(ev(s, 1))) for s in sessions]
        await asyncio.sleep(0)
        ops.full = "/n1/main.jsonl"
        ops.release()
        await held
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[1], StorageError)
        kept = [
            s for s, r in zip(sessions, results, strict=True) if not isinstance(r, BaseException)
        ]
        assert kept == ["n0", "n2", "n3"]
        assert await store.list_sessions() == ["a", *kept]
        assert [r.session_id for r in await store.read_feed()] == ["a", "a", *kept]
        ops.full = None
        retried = await store.append(ev("n1", 1))
    async with FileEventStore(tmp_path) as store:
        assert await store.read("n1") == [retried]
        assert [r.session_id for r in await store.read_feed()] == ["a", "a", *kept, "n1"]


async def test_a_cancelled_creator_leaves_the_session_as_the_disk_has_it(tmp_path: Path) -> None:
    ops = _Held()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.append(ev("a", 1))
        await store.head("n")
        held = await _held(store, ops, "a", 2)
        task = asyncio.create_task(store.append(ev("n", 1)))
        await asyncio.sleep(0)
        task.cancel()
        follower = asyncio.create_task(store.append(ev("n", 2)))
        await asyncio.sleep(0)
        ops.release()
        await held
        with pytest.raises(asyncio.CancelledError):
            await task
        # The creation finished before the lock went to the next append: it follows on.
        assert (await follower).sequence == 2
        assert await store.head("n") == 2
    async with FileEventStore(tmp_path) as store:
        assert [r.sequence for r in await store.read("n")] == [1, 2]
