"""Costs that must not grow with the log: cold open, tail reads, seeks, memory."""

from __future__ import annotations

import asyncio
import random
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import FileEventStore
from eventstore.file._index import MAX_POINTS, SPACING, SparseIndex

from ._file_helpers import FaultyOps, ev

_LINE = (
    b'{"session_id":"big","branch_id":"main","sequence":%d,"kind":"message",'
    b'"data":{"n":%d,"text":"%s"},"metadata":{},"event_id":"01J%023d",'
    b'"recorded_at":"2026-01-01T00:00:00.000000Z"}\n'
)


def _build(root: Path, count: int) -> None:
    """A store whose ``big/main`` holds ``count`` events of varying size, written fast."""

    async def manifest() -> None:
        async with FileEventStore(root, durability="write") as store:
            await store.append(ev("big", 1))

    asyncio.run(manifest())
    with (root / "big" / "main.jsonl").open("wb") as out:
        step = 100_000
        for base in range(1, count + 1, step):
            top = min(base + step, count + 1)
            out.write(b"".join(_LINE % (n, n, b"x" * (n % 97), n) for n in range(base, top)))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Path]]:
    built = {}
    for count in (10_000, 1_000_000):
        root = tmp_path_factory.mktemp(f"log{count}")
        _build(root, count)
        built[count] = root
    yield built


class _Counting(FaultyOps):
    def __init__(self) -> None:
        super().__init__()
        self.bytes_read = 0

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        data = super().pread(fd, size, offset)
        self.calls["pread"] += 1
        self.bytes_read += len(data)
        return data


async def _cost(root: Path, count: int, action: str) -> tuple[int, int, float]:
    ops = _Counting()
    async with FileEventStore(root, read_only=True, ops=ops) as store:
        started = time.perf_counter()
        if action == "head":
            assert await store.head("big") == count
        elif action == "tail":
            records = await store.read("big", from_sequence=count - 99)
            assert [r.sequence for r in records] == list(range(count - 99, count + 1))
        else:
            middle = count // 2 + 7
            records = await store.read("big", from_sequence=middle, limit=10)
            assert [r.data["n"] for r in records] == list(range(middle, middle + 10))
        return ops.calls["pread"], ops.bytes_read, time.perf_counter() - started


@pytest.mark.parametrize("action", ["head", "tail", "middle"])
async def test_cost_does_not_grow_with_the_log(logs: dict[int, Path], action: str) -> None:
    small = await _cost(logs[10_000], 10_000, action)
    large = await _cost(logs[1_000_000], 1_000_000, action)
    # I/O is what scales with a scan; compare it exactly, time only loosely.
    assert large[0] <= 2 * small[0] + 4, (small, large)
    assert large[1] <= 2 * small[1] + 16_384, (small, large)
    assert large[2] <= 2 * small[2] + 0.05, (small, large)


async def test_index_is_kept_and_reused(logs: dict[int, Path]) -> None:
    ops = _Counting()
    async with FileEventStore(logs[1_000_000], read_only=True, ops=ops) as store:
        await store.read("big", from_sequence=700_000, limit=5)
        first = ops.calls["pread"]
        await store.read("big", from_sequence=700_010, limit=5)
        # The second read starts from a point the first one found: no new probes.
        assert ops.calls["pread"] - first <= 4


async def test_streaming_holds_constant_memory(logs: dict[int, Path]) -> None:
    async with FileEventStore(logs[1_000_000], read_only=True) as store:
        tracemalloc.start()
        try:
            count = 0
            async for record in store.iter_events("big", from_sequence=950_001):
                count += 1
                assert record.sequence == 950_000 + count
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # The 50,000 records together take ~25 MiB; streaming holds a few chunks.
    assert count == 50_000
    assert peak < 4 * 1024 * 1024, peak


async def test_idle_sessions_are_evicted(tmp_path: Path) -> None:
    # 100,000 sessions touched once (plus real ones read and appended to): the
    # cache stays at its cap, so what the last 20,000 touches leave allocated is
    # a few hundred sessions' worth, not 20,000.
    async with FileEventStore(tmp_path, durability="write", max_cached_sessions=500) as store:
        await asyncio.gather(*(store.append(ev(f"real{n}", 1)) for n in range(1000)))

        async def touch(base: int) -> None:
            await asyncio.gather(
                *(store.head(f"s{n}") for n in range(base, base + 1000)),
                store.read(f"real{base // 100}"),
                store.append(ev(f"real{base // 100}", 2)),
            )

        for base in range(0, 80_000, 1000):
            await touch(base)
        tracemalloc.start()
        try:
            for base in range(80_000, 100_000, 1000):
                await touch(base)
            kept, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert store.statistics().cached_sessions <= 1500
        assert await store.head("s99999") == 0
    assert kept < 2 * 1024 * 1024, kept


async def test_seeks_land_exactly_with_uneven_records(tmp_path: Path) -> None:
    # Interpolation assumes similar sizes; bursts of huge records must not fool it.
    rng = random.Random(7)
    sizes = [
        rng.choice([0, 10, 50_000]) if n % 500 < 20 else rng.randint(0, 300) for n in range(5000)
    ]
    async with FileEventStore(tmp_path, durability="write") as store:
        for base in range(0, 5000, 250):
            await store.append_batch(
                [
                    ev("s1", n + 1, data={"n": n + 1, "pad": "x" * sizes[n]})
                    for n in range(base, base + 250)
                ]
            )
    for _ in range(3):
        async with FileEventStore(tmp_path, read_only=True) as store:
            for _ in range(40):
                start = rng.randint(1, 5000)
                limit = rng.choice([1, 7, 300])
                got = [
                    r.data["n"] for r in await store.read("s1", from_sequence=start, limit=limit)
                ]
                assert got == list(range(start, min(start + limit, 5001)))


async def test_index_stays_small_on_a_full_scan(logs: dict[int, Path]) -> None:
    async with FileEventStore(logs[1_000_000], read_only=True) as store:
        count = 0
        async for _ in store.iter_events("big", from_sequence=1):
            count += 1
        assert count == 1_000_000
        session = store._cache["big"]
        assert len(session.branches["main"].index) <= MAX_POINTS
        middle = await store.read("big", from_sequence=654_321, limit=3)
        assert [r.sequence for r in middle] == [654_321, 654_322, 654_323]


def test_sparse_index_thins_out_instead_of_growing() -> None:
    index = SparseIndex()
    for n in range(10_000):
        index.note(1 + n * SPACING, n * 1000)
    assert 1000 < len(index) <= MAX_POINTS
