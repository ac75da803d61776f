"""Issue 16's fan-out and memory-store goals, measured alone (not part of the main table).

``python -m benchmarks._fanout_check [--seconds S] [--repeats N] [--only live,memory]``

* live: ``_live._paced`` unchanged (file store, ``durability="write"``, 10,000
  events/s; 100 subscribers over the file store and over the memory store).
* memory: ``MemoryEventStore.append`` against eventsourcing's POPO recorder,
  in turns within one process, fastest round of each side.

Each repeat prints one line per case; ranges over the repeats at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from eventstore import MemoryEventStore

from . import _peers
from ._harness import MODES, Context, make_records
from ._live import _paced

__all__ = ("main",)


async def _live_once(ctx: Context, subscribers: int, memory: bool) -> dict[str, Any]:
    return await _paced(ctx, subscribers, memory=memory)


async def _memory_once(count: int, rounds: int) -> tuple[float, float]:
    """(ours, POPO) events/s, the fastest of ``rounds`` turns each."""
    records = make_records("mem", count)
    events = _peers.stored_events("mem", count)
    ours: list[float] = []
    peer: list[float] = []
    for _ in range(rounds):
        async with MemoryEventStore() as store:
            start = time.perf_counter()
            for record in records:
                await store.append(record)
            ours.append(time.perf_counter() - start)
        recorder = _peers.popo_recorder()
        start = time.perf_counter()
        for event in events:
            recorder.insert_events([event])
        peer.append(time.perf_counter() - start)
    return count / min(ours), count / min(peer)


def _set_wake_interval(seconds: float) -> None:
    """Make ``seconds`` the default ``wake_interval`` of every hub made from now on."""
    from stream import EventStreamHub

    defaults = EventStreamHub.__init__.__kwdefaults__
    if defaults is None or "wake_interval" not in defaults:
        raise SystemExit("this tree's EventStreamHub has no wake_interval")
    defaults["wake_interval"] = seconds


def _span(values: list[float], fmt: str) -> str:
    return f"{fmt.format(min(values))} - {fmt.format(max(values))}"


async def _main(args: argparse.Namespace) -> None:
    only = set(args.only.split(","))
    if args.wake_interval is not None:
        _set_wake_interval(args.wake_interval)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = dataclasses.replace(MODES["full"], live_seconds=args.seconds)
        results: dict[str, list[dict[str, Any]]] = {}
        ratios: list[float] = []
        for repeat in range(args.repeats):
            if "live" in only:
                for subscribers, memory in ((1, False), (100, False), (100, True)):
                    ctx = Context(sizes, Path(tmp) / f"r{repeat}-{subscribers}-{memory}", "")
                    ctx.workdir.mkdir()
                    stats = await _live_once(ctx, subscribers, memory)
                    name = f"{subscribers:>3} sub, {'memory' if memory else 'file  '}"
                    results.setdefault(name, []).append(stats)
                    print(
                        f"[{repeat}] {name}: held {stats['achieved_rate']:>7,.0f} ev/s"
                        f"  p50 {stats['p50'] * 1e6:>8.0f} µs  p99 {stats['p99'] * 1e6:>8.0f} µs"
                        f"  max {stats['max'] * 1e3:>7.1f} ms",
                        flush=True,
                    )
            if "memory" in only:
                ours, peer = await _memory_once(args.appends, 3)
                ratios.append(ours / peer)
                print(
                    f"[{repeat}] memory append: ours {ours:,.0f} ev/s, POPO {peer:,.0f} ev/s,"
                    f" {ours / peer:.2f}x",
                    flush=True,
                )
        print("-- ranges over the repeats")
        for name, runs in results.items():
            print(
                f"{name}: held {_span([r['achieved_rate'] for r in runs], '{:,.0f}')} ev/s,"
                f" p99 {_span([r['p99'] * 1e6 for r in runs], '{:.0f}')} µs"
            )
        if ratios:
            print(f"memory append / POPO: {_span(ratios, '{:.2f}')}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="live seconds per case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--appends", type=int, default=100_000, help="memory appends per round")
    parser.add_argument("--only", default="live,memory")
    parser.add_argument(
        "--wake-interval", type=float, default=None, help="the hubs' wake_interval, seconds"
    )
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
