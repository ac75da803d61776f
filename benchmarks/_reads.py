"""Read workloads over long histories: full replay, tail read, cold open, fork.

The histories are built once per run (ours with ``append_batch`` of large
batches and ``durability="write"``; the peer with 10,000-event transactions)
and shared by the workloads. The scale goals compare our cost on the big
history with our cost on the small one: it must not grow with the log.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

from eventstore import EventStore

from . import _limits, _peers
from ._harness import (
    Context,
    Goal,
    Row,
    file_store,
    make_records,
    median,
    record_lines,
    rounds,
    side,
)

__all__ = ("WORKLOADS",)

#: Events per ``append_batch`` / SQLite transaction while building histories.
BUILD_BATCH = 10_000


def _session(size: int) -> str:
    return f"h{size}"


def _label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size:,}"


async def _ours(ctx: Context, size: int) -> Path:
    """The root of a file store holding one ``size``-event branch (built once)."""
    key = f"ours-{size}"
    if key not in ctx.cache:
        root = ctx.path(key)
        store = file_store(root, "write")
        start = time.perf_counter()
        async with store:
            for first in range(1, size + 1, BUILD_BATCH):
                count = min(BUILD_BATCH, size - first + 1)
                await store.append_batch(make_records(_session(size), count, start=first))
        ctx.cache[f"build-{key}"] = size / (time.perf_counter() - start)
        ctx.cache[key] = root
    built: Path = ctx.cache[key]
    return built


def _peer(ctx: Context, size: int) -> Path:
    """The file of an eventsourcing SQLite database holding ``size`` events (built once)."""
    key = f"peer-{size}"
    if key not in ctx.cache:
        path = ctx.path(f"{key}.sqlite")
        sqlite = _peers.SqlitePeer.fresh(path)
        start = time.perf_counter()
        for first in range(1, size + 1, BUILD_BATCH):
            count = min(BUILD_BATCH, size - first + 1)
            sqlite.insert(_peers.stored_events(_session(size), count, start=first))
        ctx.cache[f"build-{key}"] = size / (time.perf_counter() - start)
        sqlite.close()
        ctx.cache[key] = path
    built: Path = ctx.cache[key]
    return built


def _limit_file(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for first in range(1, size + 1, BUILD_BATCH):
            count = min(BUILD_BATCH, size - first + 1)
            os.write(fd, b"".join(record_lines(make_records(_session(size), count, start=first))))
    finally:
        os.close(fd)


async def replay(ctx: Context) -> list[Row]:
    """Workload 4: stream a whole long branch from a freshly opened store."""
    size = ctx.sizes.big
    row = Row(f"full replay, {_label(size)} events", "ev/s")

    async def ours() -> float:
        root = await _ours(ctx, size)
        async with file_store(root) as store:
            start = time.perf_counter()
            count = 0
            async for _event in store.iter_events(_session(size)):
                count += 1
            took = time.perf_counter() - start
        if count != size:
            raise AssertionError(f"replayed {count} events, expected {size}")
        return took

    async def peer() -> float:
        sqlite = _peers.SqlitePeer(_peer(ctx, size))
        try:
            start = time.perf_counter()
            count = _peers.decode_all(sqlite.select(_session(size)))
            took = time.perf_counter() - start
        finally:
            sqlite.close()
        if count != size:
            raise AssertionError(f"peer replayed {count} events, expected {size}")
        return took

    limit_file = ctx.path(f"limit-{size}.jsonl")

    async def limit() -> float:
        if not limit_file.exists():
            _limit_file(limit_file, size)
        no_gc = _limits.read_decode(limit_file, collect=False)[0]
        row.detail["limit_gc_disabled"] = max(row.detail.get("limit_gc_disabled", 0), size / no_gc)
        return _limits.read_decode(limit_file)[0]

    row.baseline_name = "SQLite select_events"
    await rounds(ctx, row, size, {"ours": ours, "peer": peer, "limit": limit})
    limit_file.unlink(missing_ok=True)
    row.goal = Goal("min_ratio", 2.0, ">= 2x SQLite")
    for key in (f"build-ours-{size}", f"build-peer-{size}"):
        if key in ctx.cache:
            row.detail[key] = ctx.cache[key]
    return [row]


Sampler = Callable[[], Awaitable[float]]
Prepare = Callable[[int], AbstractAsyncContextManager[Sampler]]


async def _alternate(ctx: Context, prepare: Prepare, sizes: tuple[int, int]) -> list[float]:
    """Median cost at each size, sampling the two sizes in turns.

    In turns, so that a neighbour's burst of fsyncs cannot land on one size only
    and fake a growth (or hide one).
    """
    samples: list[list[float]] = [[], []]
    async with AsyncExitStack() as stack:
        samplers = [await stack.enter_async_context(prepare(size)) for size in sizes]
        for _ in range(ctx.sizes.samples):
            for sampler, out in zip(samplers, samples, strict=True):
                out.append(await sampler())
    return [median(out) for out in samples]


async def _scaled(
    ctx: Context, what: str, sizes: tuple[int, int], ours: Prepare, peer: Prepare | None
) -> list[Row]:
    """Two rows: the small history against the peer, the big one against the small."""
    small = Row(f"{what} @{_label(sizes[0])}", "s")
    big = Row(f"{what} @{_label(sizes[1])}", "s")
    costs = await side(small, "ours", lambda: _alternate(ctx, ours, sizes))
    if costs is not None:
        small.ours, big.ours = costs
    if peer is not None:
        small.baseline_name = "SQLite"
        peer_costs = await side(small, "peer", lambda: _alternate(ctx, peer, sizes))
        if peer_costs is not None:
            small.baseline = peer_costs[0]
            big.detail["sqlite"] = peer_costs[1]
            big.note = f"SQLite {peer_costs[1] * 1e6:.0f} µs"
    big.baseline_name = f"ours @{_label(sizes[0])}"
    big.baseline = small.ours
    big.goal = Goal("max_ratio", 2.0, f"<= 2x @{_label(sizes[0])}")
    big.status = small.status
    # What the charts group by: one series per ``what``, x = the history's length.
    for row, size in ((small, sizes[0]), (big, sizes[1])):
        row.detail.update(series=what, history_size=size)
    return [small, big]


def _timer(fn: Callable[[], Awaitable[object]]) -> Sampler:
    async def sample() -> float:
        start = time.perf_counter()
        await fn()
        return time.perf_counter() - start

    return sample


async def tail(ctx: Context) -> list[Row]:
    """Workload 5: the last 100 events of a branch, warm store, median of samples."""

    @asynccontextmanager
    async def ours(size: int) -> AsyncIterator[Sampler]:
        async with file_store(await _ours(ctx, size)) as store:
            session = _session(size)
            events = await store.read(session, from_sequence=await store.head(session) - 99)
            if len(events) != 100 or events[-1].sequence != size:
                raise AssertionError(f"tail read returned {len(events)} events")
            yield _timer(lambda: store.read(session, from_sequence=size - 99))

    @asynccontextmanager
    async def peer(size: int) -> AsyncIterator[Sampler]:
        sqlite = _peers.SqlitePeer(_peer(ctx, size))
        try:
            yield _sync_timer(
                lambda: _peers.decode_all(sqlite.select(_session(size), gt=size - 100))
            )
        finally:
            sqlite.close()

    return await _scaled(ctx, "tail read 100", (ctx.sizes.small, ctx.sizes.big), ours, peer)


def _sync_timer(fn: Callable[[], object]) -> Sampler:
    async def sample() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return sample


async def cold_open(ctx: Context) -> list[Row]:
    """Workload 6: a new store object each time, opened until it knows the head."""

    @asynccontextmanager
    async def ours(size: int) -> AsyncIterator[Sampler]:
        root = await _ours(ctx, size)

        async def sample() -> float:
            store = file_store(root)
            start = time.perf_counter()
            await store.open()
            head = await store.head(_session(size))
            took = time.perf_counter() - start
            await store.close()
            if head != size:
                raise AssertionError(f"cold open found head {head}, expected {size}")
            return took

        yield sample

    @asynccontextmanager
    async def peer(size: int) -> AsyncIterator[Sampler]:
        path = _peer(ctx, size)

        async def sample() -> float:
            start = time.perf_counter()
            sqlite = _peers.SqlitePeer(path)
            head = sqlite.head(_session(size))
            took = time.perf_counter() - start
            sqlite.close()
            if head != size:
                raise AssertionError(f"peer head {head}, expected {size}")
            return took

        yield sample

    return await _scaled(ctx, "cold open -> head", (ctx.sizes.small, ctx.sizes.big), ours, peer)


async def fork(ctx: Context) -> list[Row]:
    """Workload 7: ``create_branch`` at the head of a short and a long history."""

    @asynccontextmanager
    async def ours(size: int) -> AsyncIterator[Sampler]:
        async with file_store(await _ours(ctx, size)) as store:
            names = (f"fork-{i}" for i in itertools.count())
            await store.head(_session(size))

            async def sample() -> float:
                start = time.perf_counter()
                info = await store.create_branch(_session(size), next(names))
                took = time.perf_counter() - start
                if info.head != size:
                    raise AssertionError(f"fork head {info.head}, expected {size}")
                return took

            yield sample

    sizes = (ctx.sizes.fork_small, ctx.sizes.big)
    rows = await _scaled(ctx, "fork (create_branch)", sizes, ours, None)
    rows[0].note = "; ".join(filter(None, [rows[0].note, "eventsourcing has no branches"]))
    return [*rows, await _fork_by_branches(ctx)]


async def _fork_by_branches(ctx: Context) -> Row:
    """Fork cost in a session of ``fork_branches`` branches against one of a single branch."""
    count = ctx.sizes.fork_branches
    row = Row(f"fork (create_branch) with {count:,} branches", "s")
    row.baseline_name = "ours with 1"
    row.goal = Goal("max_ratio", 1.5, "<= 1.5x with 1")
    stats = await side(row, "ours", lambda: _branch_growth(ctx, count))
    if stats is not None:
        row.ours, row.baseline = stats["with_many"], stats["with_one"]
        row.detail = stats
    return row


async def _branch_growth(ctx: Context, count: int) -> dict[str, object]:
    """Grow one session to ``count`` branches timing every fork, then sample in turns.

    The turns compare a fork of the grown session with a fork of a fresh
    one-branch session (one per sample, so it stays at one branch).
    """
    samples = ctx.sizes.samples
    singles = [f"single{i}" for i in range(samples)]
    async with file_store(ctx.path("fork-branches")) as store:
        for session in [*singles, "many"]:
            await store.append_batch(make_records(session, ctx.sizes.fork_small))
        growth = [await _timed_fork(store, "many", f"b{n}") for n in range(1, count)]
        with_one, with_many = [], []
        for i, session in enumerate(singles):
            with_one.append(await _timed_fork(store, session, "fork"))
            with_many.append(await _timed_fork(store, "many", f"s{i}"))
    return {
        "with_one": median(with_one),
        "with_many": median(with_many),
        "by_branches": _checkpoints(growth),
    }


async def _timed_fork(store: EventStore, session: str, branch: str) -> float:
    start = time.perf_counter()
    await store.create_branch(session, branch)
    return time.perf_counter() - start


def _checkpoints(growth: list[float]) -> dict[str, list[float]]:
    """The median fork cost near 1, 2, 5, 10, 20 ... existing branches.

    ``growth[i]`` is the fork made when the session had ``i + 1`` branches; each
    point is the median of the last fifth of forks up to it (one fork below 10).
    """
    points: dict[str, list[float]] = {"branches": [], "seconds": []}
    for decade in (1, 10, 100, 1000, 10_000, 100_000):
        for step in (1, 2, 5):
            existing = decade * step
            if existing > len(growth):
                return points
            window = growth[existing - max(1, existing // 5) : existing]
            points["branches"].append(existing)
            points["seconds"].append(median(window))
    return points


WORKLOADS = (replay, tail, cold_open, fork)
