"""Issue 16's file-store goals: fork cost against branch count, new sessions against appends.

``python -m benchmarks._fork_sessions [--repeats 3] [--branches 1000] [--sessions 10000]``

Two ratios, each measured ``--repeats`` times in one process and reported as
a range (the machine is shared; compare ratios, not absolute numbers):

- **fork with many branches / fork with one**: one session grown to
  ``--branches`` branches by forking, then forks of it taken in turns with
  forks of fresh one-branch sessions (one per sample, so each stays at one);
  the medians of ``--samples`` forks each.
- **new sessions / appends to existing sessions** (``durability="fsync"``):
  ``--sessions`` new sessions of one event each against as many appends of
  one event to sessions that already exist, sequentially (one after another)
  and concurrently (``--concurrency`` tasks at a time); the rate of each.

``--profile`` adds where the I/O thread's time goes: every :class:`FileOps`
call timed by name (seconds, calls) for a fork in the big session and for
the new sessions, so a syscall's share of a ratio is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from eventstore.file import FileEventStore, FileOps

from ._harness import make_records

__all__ = ("main",)


class TimedOps(FileOps):
    """:class:`FileOps` that adds up the time and calls of each system call."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: defaultdict[str, int] = defaultdict(int)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def report(self, title: str) -> str:
        total = sum(self.seconds.values())
        lines = [f"  {title}: {total * 1e3:.1f} ms in system calls"]
        for name, took in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {name:<10} {took * 1e3:9.2f} ms {self.calls[name]:>8} calls")
        return "\n".join(lines)


def _timed(name: str) -> Callable[..., Any]:
    base = getattr(FileOps, name)

    def call(self: TimedOps, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return base(self, *args, **kwargs)
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    return call


for _name in (
    "open",
    "close",
    "pread",
    "pwrite",
    "fsync",
    "syncfs",
    "ftruncate",
    "fstat",
    "mkdir",
    "replace",
    "unlink",
    "rename",
):
    setattr(TimedOps, _name, _timed(_name))


async def _timed_fork(store: FileEventStore, session: str, branch: str) -> float:
    start = time.perf_counter()
    await store.create_branch(session, branch)
    return time.perf_counter() - start


async def fork_ratio(
    root: Path, branches: int, samples: int, ops: TimedOps | None
) -> dict[str, float]:
    """Median fork cost with ``branches`` branches and with one, and their ratio."""
    singles = [f"single{i}" for i in range(samples)]
    async with FileEventStore(root, ops=ops) as store:
        for session in [*singles, "many"]:
            await store.append_batch(make_records(session, 10))
        for n in range(1, branches):
            await store.create_branch("many", f"b{n}")
        with_one, with_many = [], []
        for i, session in enumerate(singles):
            with_one.append(await _timed_fork(store, session, "fork"))
            with_many.append(await _timed_fork(store, "many", f"s{i}"))
        if ops is not None:
            ops.reset()
            for i in range(samples):
                await store.create_branch("many", f"p{i}")
            print(ops.report(f"{samples} forks with {branches} branches"))
            ops.reset()
            for i in range(samples):
                await store.create_branch(singles[i], "p")
            print(ops.report(f"{samples} forks with 2 branches"))
    one, many = statistics.median(with_one), statistics.median(with_many)
    return {"with_one_ms": one * 1e3, "with_many_ms": many * 1e3, "ratio": many / one}


async def _run(count: int, concurrency: int, step: Callable[[int], Awaitable[object]]) -> float:
    """Events/s of ``step(0..count-1)``, ``concurrency`` at a time (1: one after another)."""
    start = time.perf_counter()
    if concurrency <= 1:
        for i in range(count):
            await step(i)
    else:
        next_index = iter(range(count))

        async def worker() -> None:
            for i in next_index:
                await step(i)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


async def session_ratio(
    root: Path, count: int, concurrency: int, ops: TimedOps | None
) -> dict[str, float]:
    """New sessions of one event against appends to sessions that exist, events/s."""
    firsts = [make_records(f"new{i}", 1)[0] for i in range(count)]
    olds = [make_records(f"old{i}", 1)[0] for i in range(count)]
    seconds = [make_records(f"old{i}", 1, start=2)[0] for i in range(count)]
    async with FileEventStore(root, ops=ops) as store:
        await _run(count, 64, lambda i: store.append(olds[i]))
        if ops is not None:
            ops.reset()
        appends = await _run(count, concurrency, lambda i: store.append(seconds[i]))
        if ops is not None:
            print(ops.report(f"{count} appends to existing sessions, concurrency {concurrency}"))
            ops.reset()
        news = await _run(count, concurrency, lambda i: store.append(firsts[i]))
        if ops is not None:
            print(ops.report(f"{count} new sessions, concurrency {concurrency}"))
    return {"appends_per_s": appends, "new_per_s": news, "ratio": news / appends}


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


async def _main(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="fork-sessions-", dir=args.dir))
    try:
        forks: list[dict[str, float]] = []
        news: dict[int, list[dict[str, float]]] = {1: [], args.concurrency: []}
        for repeat in range(args.repeats):
            ops = TimedOps() if args.profile and repeat == 0 else None
            result = await fork_ratio(base / f"fork{repeat}", args.branches, args.samples, ops)
            forks.append(result)
            print(f"fork, repeat {repeat + 1}: {result}", flush=True)
            for concurrency in news:
                count = args.sessions if concurrency > 1 else args.sequential
                root = base / f"sessions{repeat}-{concurrency}"
                result = await session_ratio(root, count, concurrency, ops)
                news[concurrency].append(result)
                print(f"sessions c={concurrency}, repeat {repeat + 1}: {result}", flush=True)
                shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(base / f"fork{repeat}", ignore_errors=True)
        print()
        print(
            f"fork with {args.branches} branches / with 1: ratio "
            f"{_range([r['ratio'] for r in forks])}x (goal <= 1.5x); medians "
            f"{_range([r['with_many_ms'] for r in forks])} ms vs "
            f"{_range([r['with_one_ms'] for r in forks])} ms"
        )
        for concurrency, results in news.items():
            count = args.sessions if concurrency > 1 else args.sequential
            mode = "sequential" if concurrency == 1 else f"{concurrency} concurrent tasks"
            print(
                f"{count} new sessions / {count} appends to existing, {mode}: ratio "
                f"{_range([r['ratio'] for r in results])}x (goal >= 0.5x); "
                f"{_range([r['new_per_s'] for r in results])} vs "
                f"{_range([r['appends_per_s'] for r in results])} events/s"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Run the measurements and print the ratios' ranges."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._fork_sessions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=10_000, help="concurrent run")
    parser.add_argument("--sequential", type=int, default=2_000, help="sequential run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--dir", default=None, help="where the temporary roots go")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
