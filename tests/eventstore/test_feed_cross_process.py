"""A read-only FileEventStore follows a writer in another process, live.

The writer is a child process appending at about 1,000 events/s across two
sessions (single events, batches, ``append_next``); two read-only stores in
this process listen. Each must be told of every record the writer commits,
once, in position order, and nothing else: exactly what ``read_feed`` returns
afterwards. Run with inotify and with the polling fallback.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from eventstore import EventRecord, FileEventStore

from ._file_helpers import ev

_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from eventstore import EventRecord, FileEventStore

    async def main(root, count, rate):
        async with FileEventStore(root, durability="write") as store:
            print("ready", flush=True)
            sys.stdin.readline()
            start = time.perf_counter()
            for n in range(count):
                session = "s1" if n % 2 else "s2"
                data = {"n": n, "t": time.time()}
                if n % 10 == 0:
                    await store.append_next(
                        [EventRecord.new(session, "main", 1, "batch", data) for _ in range(3)]
                    )
                else:
                    await store.append_next([EventRecord.new(session, "main", 1, "message", data)])
                # Keep to the rate: sleep until the next event is due.
                due = start + (n + 1) / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
    """
)

PROJECT = str(Path(__file__).resolve().parents[2])


class _Collector:
    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self.latencies: list[float] = []
        self.calls = 0

    def committed(self, records: Sequence[EventRecord]) -> None:
        now = time.time()
        self.calls += 1
        self.records.extend(records)
        for record in records:
            if isinstance(record.data, dict) and "t" in record.data:
                self.latencies.append(now - record.data["t"])


class _PollingStore(FileEventStore):
    _inotify = False


async def _follow(
    root: Path, count: int, rate: float, store_type: type[FileEventStore]
) -> list[_Collector]:
    async with FileEventStore(root) as writer:
        await writer.append(ev("s0", 1))  # the root exists, with something before "now"
    async with store_type(root, read_only=True) as one, store_type(root, read_only=True) as two:
        collectors = [_Collector(), _Collector()]
        assert await one.feed_head() == 1
        one.add_listener(collectors[0])
        two.add_listener(collectors[1])
        with subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), str(count), str(rate)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": PROJECT},
        ) as child:
            try:
                assert child.stdout is not None and child.stdin is not None
                assert child.stdout.readline().strip() == b"ready"
                await asyncio.sleep(0.05)  # both followers have started
                child.stdin.write(b"go\n")
                child.stdin.flush()
                expected = count + 2 * len(range(0, count, 10))
                deadline = time.monotonic() + 60
                while min(len(c.records) for c in collectors) < expected:
                    assert time.monotonic() < deadline, [len(c.records) for c in collectors]
                    assert child.poll() in (None, 0)
                    await asyncio.sleep(0.01)
                assert await asyncio.to_thread(child.wait, 30) == 0
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        await asyncio.sleep(0.05)  # nothing more arrives
        feed = await one.read_feed(1)
        for collector in collectors:
            assert collector.records == feed
            # One call per range the follower read, not one per event.
            assert collector.calls < len(feed)
        assert await two.feed_head() == feed[-1].position
        return collectors


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.99) - 1]


@pytest.mark.parametrize("store_type", [FileEventStore, _PollingStore], ids=["inotify", "poll"])
async def test_read_only_stores_follow_a_writer_process(
    tmp_path: Path, store_type: type[FileEventStore]
) -> None:
    collectors = await _follow(tmp_path, 300, 1000.0, store_type)
    # Generous for a loaded CI machine; the benchmark below measures it properly.
    assert _p99(collectors[0].latencies) < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("store_type", [FileEventStore, _PollingStore], ids=["inotify", "poll"])
async def test_cross_process_delivery_latency_at_1000_events_per_second(
    tmp_path: Path, store_type: type[FileEventStore]
) -> None:
    collectors = await _follow(tmp_path, 5000, 1000.0, store_type)
    latencies = collectors[0].latencies
    p50 = sorted(latencies)[len(latencies) // 2]
    print(
        f"\n{(store_type._inotify and 'inotify') or 'poll'}: {len(latencies)} events, "
        f"p50 {p50 * 1000:.1f} ms, p99 {_p99(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    # The goal is 50 ms (BENCHMARKS.md: 6-11 ms with inotify, 17-29 ms polling every
    # 10 ms). Here, beside the rest of CI on a shared 2-core machine, a stall of the
    # runner is not the store's: the bound is five times the goal, which still fails
    # a follower that waits on a timer instead of being woken.
    assert _p99(latencies) <= 0.25
