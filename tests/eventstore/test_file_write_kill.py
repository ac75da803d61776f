"""``durability="write"`` survives a process kill: every acknowledged append is there.

Appends in ``"write"`` mode are written on the event loop's thread when the I/O
thread has nothing queued (the page cache, no sync), and through the I/O thread
otherwise. A SIGKILL at any point of a stream of both kinds loses nothing that
was acknowledged: only a machine crash may (the documented cost of ``"write"``).
The feed stays whole too: every acknowledged record is in it once, positions
only grow, and positions given after the kill never repeat one on disk.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import textwrap
import threading
from pathlib import Path

import pytest

from eventstore import FileEventStore, StorageError

from ._file_helpers import FaultyOps, ev, kill_after

_CHILD = textwrap.dedent(
    """
    import asyncio, random, sys
    from eventstore import EventRecord, FileEventStore

    def record(session, seq, branch="main"):
        return EventRecord.new(session, branch, seq, "message", {"seq": seq})

    async def singles(store, session):
        # Inline writes while nothing else is queued.
        seq = await store.head(session)
        while True:
            seq += 1
            await store.append(record(session, seq))
            print("ack", session, seq, flush=True)

    async def batches(store, session, rng):
        seq = await store.head(session)
        while True:
            size = rng.randint(1, 6)
            stored = await store.append_next(
                [record(session, n) for n in range(1, size + 1)]
            )
            seq = stored[-1].sequence
            print("ack", session, seq, flush=True)

    async def creator(store, rng, tag):
        # New sessions go through the I/O thread: queued work between inline writes.
        n = 0
        while True:
            n += 1
            session = f"n{tag}x{n}"
            await store.append(record(session, 1))
            print("ack", session, 1, flush=True)
            await asyncio.sleep(rng.random() / 1000)

    async def main(root, seed):
        rng = random.Random(seed)
        async with FileEventStore(root, durability="write") as store:
            print("ready", flush=True)
            await asyncio.gather(
                singles(store, "s1"),
                batches(store, "s2", rng),
                creator(store, rng, seed),
            )

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def _kill_after(root: Path, acks: int, seed: int) -> dict[str, int]:
    return await kill_after(_CHILD, root, acks, seed, ready=True)


@pytest.mark.slow
async def test_sigkill_mid_stream_of_write_appends_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    rng = random.Random(os.environ.get("SIGKILL_SEED", 1616))
    acked: dict[str, int] = {}
    for kill in range(10):
        for session, seq in (await _kill_after(tmp_path, rng.randint(50, 3000), kill)).items():
            acked[session] = max(acked.get(session, 0), seq)
        async with FileEventStore(tmp_path, durability="write") as store:
            heads = {}
            for session, seq in acked.items():
                head = heads[session] = await store.head(session)
                assert head >= seq, f"kill {kill}: {session} acknowledged {seq}, head {head}"
                records = await store.read(session)
                assert [r.sequence for r in records] == list(range(1, head + 1)), f"kill {kill}"
            feed = await store.read_feed()
            positions = [r.position for r in feed]
            assert positions == sorted(set(positions)), f"kill {kill}: positions repeat"
            assert 0 not in positions
            in_feed = {(r.session_id, r.sequence) for r in feed}
            for session, head in heads.items():
                assert {(session, n) for n in range(1, head + 1)} <= in_feed, f"kill {kill}"
            # Writes go on after the kill, at positions above every one on disk.
            after = await store.append(ev("s1", heads.get("s1", 0) + 1))
            assert after.position > max(positions, default=0)
            acked["s1"] = after.sequence
            assert [r.position for r in await store.read_feed(after=positions[-1])] == [
                after.position
            ]
    # Enough acknowledged appends that kills landed mid-stream, not before it.
    assert sum(acked.values()) > 500


async def test_a_new_session_behind_a_queued_write_keeps_the_feed_in_position_order(
    tmp_path: Path,
) -> None:
    # One round holds a write to s1 and then s2's creation (a call that writes
    # its own feed entries): the write's lower position must reach the index first.
    ops = FaultyOps()
    async with FileEventStore(tmp_path, ops=ops) as store:
        await store.append(ev("s0", 1))
        await store.append(ev("s1", 1))
        assert await store.head("s2") == 0  # loaded, so its creation queues at once
        ops.gate = threading.Event()
        held = asyncio.create_task(store.append(ev("s0", 2)))
        await asyncio.sleep(0.1)  # the I/O thread waits at the gate inside that round
        tasks = [
            asyncio.create_task(store.append(ev("s1", 2))),
            asyncio.create_task(store.append(ev("s2", 1))),
        ]
        await asyncio.sleep(0.1)
        ops.gate.set()
        s0, s1, s2 = await asyncio.gather(held, *tasks)
        assert s0.position < s1.position < s2.position
        feed = await store.read_feed()
        assert [r.position for r in feed] == sorted(r.position for r in feed)
        assert [(r.session_id, r.sequence) for r in feed][-2:] == [("s1", 2), ("s2", 1)]
    async with FileEventStore(tmp_path) as store:
        positions = [r.position for r in await store.read_feed()]
        assert positions == sorted(positions)


@pytest.mark.parametrize("short", [False, True], ids=["write", "short-write"])
@pytest.mark.parametrize("fail", [1, 2], ids=["feed-index", "log"])
@pytest.mark.parametrize("batch", [1, 3], ids=["append", "batch"])
async def test_a_failed_inline_write_loses_nothing_and_leaves_no_trace(
    tmp_path: Path, short: bool, fail: int, batch: int
) -> None:
    # "write" mode writes on the loop's thread: first the feed index, then the
    # log. A failure at either cuts both back, like a failed round.
    ops = FaultyOps()
    log = tmp_path / "s1" / "main.jsonl"
    async with FileEventStore(tmp_path, durability="write", ops=ops) as store:
        written = await store.append_batch([ev("s1", n) for n in (1, 2, 3)])
        rounds = store.statistics().rounds
        before = log.read_bytes()
        index = (tmp_path / "feed.idx").read_bytes()
        ops.arm("pwrite", errno.EIO, skip=fail - 1, short=short)
        attempt = [ev("s1", n) for n in range(4, 4 + batch)]
        with pytest.raises(StorageError) as info:
            await store.append_batch(attempt)
        assert info.value.errno == errno.EIO
        # Made inline: one round more, no hop (the thread would count one too).
        assert store.statistics().rounds == rounds + 1
        assert log.read_bytes() == before
        assert (tmp_path / "feed.idx").read_bytes() == index
        assert await store.head("s1") == 3
        assert await store.read_feed() == written
        retried = await store.append_batch(attempt)
        assert retried[0].position > written[-1].position
        assert await store.read_feed() == written + retried
    async with FileEventStore(tmp_path) as store:
        assert await store.read("s1") == written + retried
        assert await store.read_feed() == written + retried


async def test_write_mode_appends_skip_the_io_thread(tmp_path: Path) -> None:
    # Once the log is open and nothing is queued, an append is written inline:
    # the I/O thread's queue never sees it (the hop is what made "write" slow).
    async with FileEventStore(tmp_path, durability="write") as store:
        await store.append(ev("s1", 1))
        writer = store._io
        queue = writer._queue
        puts = []

        class Counting:
            def put(self, item: object) -> None:
                puts.append(item)
                queue.put(item)  # type: ignore[arg-type]

            def __getattr__(self, name: str) -> object:
                return getattr(queue, name)

        writer._queue = Counting()  # type: ignore[assignment]
        for n in range(2, 102):
            await store.append(ev("s1", n))
        await store.append_next([ev("s1", 1), ev("s1", 2)])
        assert puts == []
        await store.create_branch("s1", "alt")  # anything else still goes through the thread
        assert puts
        assert await store.head("s1") == 103
    async with FileEventStore(tmp_path) as store:
        assert [r.sequence for r in await store.read("s1")] == list(range(1, 104))


class _FeedSyncFails(FaultyOps):
    """Fails the next ``fsync`` of ``feed.idx`` (synced beside the logs, on its own thread)."""

    armed = False

    def fsync(self, fd: int) -> None:
        if self.armed and os.readlink(f"/proc/self/fd/{fd}").endswith("feed.idx"):
            self.armed = False
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fsync(fd)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name descriptors")
async def test_a_failed_feed_index_sync_fails_the_round_and_leaves_no_trace(
    tmp_path: Path,
) -> None:
    ops = _FeedSyncFails()
    log = tmp_path / "s1" / "main.jsonl"
    async with FileEventStore(tmp_path, ops=ops) as store:
        written = await store.append_batch([ev("s1", n) for n in (1, 2, 3)])
        before = log.read_bytes()
        ops.armed = True
        with pytest.raises(StorageError) as info:
            await store.append(ev("s1", 4))
        assert info.value.errno == errno.EIO
        assert not ops.armed
        assert log.read_bytes() == before
        assert await store.head("s1") == 3
        assert await store.read_feed() == written
        retried = await store.append(ev("s1", 4))
        assert await store.read_feed() == [*written, retried]
    async with FileEventStore(tmp_path) as store:
        assert await store.read_feed() == [*written, retried]
