"""Workload 8: live subscriptions through ``EventJournal`` and ``EventStreamHub``.

A paced writer appends at a steady rate (10,000 events/s in full and quick
mode) while 1, then 100 subscribers follow the branch; the latency of an event
is the time from just before ``journal.append`` to its arrival in a
subscriber's ``async for``. The store is a ``FileEventStore`` with
``durability="write"``: a single writer fsyncing every event cannot reach the
rate, and fsync latency is measured by workload 1. Every subscriber checks
its sequences are gap-free and duplicate-free.

Catch-up: a subscriber starting at 0 on the long history built for the
replay, until it reaches the head.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from eventstore import MemoryEventStore

from ._harness import (
    Context,
    Goal,
    Row,
    file_store,
    journal_api,
    make_records,
    median,
    percentile,
    quantiles,
    side,
)
from ._reads import _label, _ours, _session

__all__ = ("WORKLOADS",)

#: Events appended before the clock starts, so every subscriber is registered and live.
WARMUP = 10
#: The share of the asked rate the paced writer must reach for it to count as held.
HELD = 0.95


class _Consumer:
    """One subscriber: records the latency of each event and checks the order."""

    def __init__(self, sent: list[float], last: int) -> None:
        self.sent = sent
        self.last = last
        self.latencies: list[float] = []
        self.warm = asyncio.Event()

    async def run(self, subscription: Any) -> None:
        expected = 1
        async with subscription:
            async for event in subscription:
                now = time.perf_counter()
                if event.sequence != expected:
                    raise AssertionError(f"got sequence {event.sequence}, expected {expected}")
                expected += 1
                if event.sequence > WARMUP:
                    self.latencies.append(now - self.sent[event.sequence])
                elif event.sequence == WARMUP:
                    self.warm.set()
                if event.sequence == self.last:
                    return


async def _paced(ctx: Context, subscribers: int, *, memory: bool = False) -> dict[str, Any]:
    event_journal = journal_api()
    rate = ctx.sizes.live_rate
    total = WARMUP + int(rate * ctx.sizes.live_seconds)
    records = make_records("live", total)
    sent = [0.0] * (total + 1)
    store = MemoryEventStore() if memory else file_store(ctx.path(f"live-{subscribers}"), "write")
    async with event_journal(store) as journal:
        consumers = [_Consumer(sent, total) for _ in range(subscribers)]
        tasks = [asyncio.create_task(c.run(journal.subscribe("live"))) for c in consumers]
        try:
            for record in records[:WARMUP]:
                await journal.append(record)
            await _until_warm(consumers, tasks)
            start = time.perf_counter()
            for i, record in enumerate(records[WARMUP:]):
                delay = start + i / rate - time.perf_counter()
                # A paced producer yields even when behind: a memory-store append
                # never suspends, and a writer that never yields starves every
                # subscriber until their buffers overflow.
                await asyncio.sleep(max(delay, 0))
                sent[record.sequence] = time.perf_counter()
                await journal.append(record)
            achieved = (total - WARMUP) / (time.perf_counter() - start)
            await asyncio.wait_for(asyncio.gather(*tasks), 60 + 20 * ctx.sizes.live_seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [x for c in consumers for x in c.latencies]
    return {
        "p50": median(latencies),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "achieved_rate": achieved,
        "deliveries": len(latencies),
        "subscribers": subscribers,
        "store": "memory" if memory else "file",
        # The distribution, for the CDF chart; every sample would be 3M floats.
        "cdf": quantiles(latencies),
    }


async def _until_warm(consumers: list[_Consumer], tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every subscriber saw the warm-up; a subscriber's failure surfaces now."""
    warm: asyncio.Future[Any] = asyncio.ensure_future(
        asyncio.gather(*(c.warm.wait() for c in consumers))
    )
    done, _ = await asyncio.wait([warm, *tasks], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if warm in done:
        return
    warm.cancel()
    for task in done:
        task.result()
    raise TimeoutError("subscribers never received the warm-up events")


async def live(ctx: Context) -> list[Row]:
    """Append->delivery latency with 1 and with N subscribers; catch-up from 0."""
    rows = []
    rate = f"{ctx.sizes.live_rate:,}/s"
    for subscribers in (1, ctx.sizes.subscribers):
        p50 = Row(f"live p50 append->delivery, {subscribers} sub, {rate}", "s")
        p99 = Row(f"live p99 append->delivery, {subscribers} sub, {rate}", "s")
        stats = await side(p99, "ours", functools.partial(_paced, ctx, subscribers))
        if stats is not None:
            p50.ours, p99.ours = stats["p50"], stats["p99"]
            p99.detail = stats
            p99.note = (
                f"achieved {stats['achieved_rate']:,.0f} ev/s, max {stats['max'] * 1e3:.1f} ms"
            )
        else:
            p50.note = p99.note
        rows += [p50, p99]
        if subscribers > 1:
            p99.goal = Goal("max_value", 1e-3, f"<= 1 ms at {rate}")
            held = Row(f"live writer rate, {subscribers} sub, asked {rate}", "ev/s")
            held.baseline, held.baseline_name = ctx.sizes.live_rate, "asked rate"
            held.goal = Goal("min_ratio", HELD, f">= {HELD:g}x asked")
            held.status = p99.status
            if stats is not None:
                held.ours = stats["achieved_rate"]
                if held.ours < HELD * ctx.sizes.live_rate:
                    p99.unmet_condition = f"the writer held only {held.ours:,.0f} ev/s"
            rows.append(held)
    rows += [await _hub_only(ctx), await _catch_up(ctx)]
    return rows


async def _hub_only(ctx: Context) -> Row:
    """The 100-subscriber case over ``MemoryEventStore``: the hub's cost alone, no I/O."""
    n = ctx.sizes.subscribers
    row = Row(f"live p99, {n} sub, {ctx.sizes.live_rate:,}/s, memory store", "s")
    stats = await side(row, "ours", functools.partial(_paced, ctx, n, memory=True))
    if stats is not None:
        row.ours = stats["p99"]
        row.detail = stats
        achieved, p50 = stats["achieved_rate"], stats["p50"] * 1e6
        row.note = f"achieved {achieved:,.0f} ev/s, p50 {p50:.0f} µs (diagnostic, no goal)"
    return row


async def _catch_up(ctx: Context) -> Row:
    size = ctx.sizes.big
    row = Row(f"catch-up subscriber from 0, {_label(size)} events", "ev/s")

    async def ours() -> float:
        event_journal = journal_api()
        root = await _ours(ctx, size)
        async with event_journal(file_store(root, "write")) as journal:
            subscription = journal.subscribe(_session(size))
            start = time.perf_counter()
            count = 0
            async with subscription:
                async for event in subscription:
                    count += 1
                    if event.sequence == size:
                        break
            took = time.perf_counter() - start
        if count != size:
            raise AssertionError(f"caught up {count} events, expected {size}")
        return size / took

    row.ours = await side(row, "ours", ours)
    return row


WORKLOADS = (live,)
