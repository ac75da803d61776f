"""Subscriptions against crafted publish orders: races, losses, cancellation, closing.

Here the test plays the journal: it writes to a store and publishes by hand, in
whatever order a race could produce.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from eventstore import EventRecord, MemoryEventStore, StoreClosed
from stream import AllSubscription, BranchSubscription, EventStreamHub

from ._helpers import drain, ev, seqs, take


@pytest.fixture
async def store() -> AsyncIterator[MemoryEventStore]:
    async with MemoryEventStore() as opened:
        yield opened


async def stored(store: MemoryEventStore, session: str, first: int, last: int) -> list[EventRecord]:
    return await store.append_batch([ev(session, n) for n in range(first, last + 1)])


async def test_out_of_order_publishes_are_delivered_in_order_once(store: MemoryEventStore) -> None:
    hub = EventStreamHub()
    sub = BranchSubscription(store, hub, "s")
    first = await stored(store, "s", 1, 2)
    hub.publish_batch(first)
    assert seqs(await take(sub, 2)) == [1, 2]
    late = await stored(store, "s", 3, 6)
    # Concurrent appenders resumed in the wrong order: 5 first, 3 last.
    for event in (late[2], late[1], late[3], late[0]):
        hub.publish(event)
    assert seqs(await take(sub, 4)) == [3, 4, 5, 6]
    hub.publish_batch(late)  # duplicates, e.g. an idempotent retry published twice
    newer = await stored(store, "s", 7, 7)
    hub.publish_batch(newer)
    assert await take(sub, 1) == newer
    sub.close()


async def test_loss_at_the_tail_is_recovered_without_a_later_event(
    store: MemoryEventStore,
) -> None:
    hub = EventStreamHub(buffer=2)
    sub = BranchSubscription(store, hub, "s")
    assert sub.position == 0
    hub.publish_batch(await stored(store, "s", 1, 5))  # 3, 4, 5 dropped; nothing follows
    assert seqs(await take(sub, 5)) == [1, 2, 3, 4, 5]
    assert sub.statistics().dropped == 3 and sub.position == 5
    sub.close()


async def test_cancelling_a_waiting_reader_loses_nothing(store: MemoryEventStore) -> None:
    hub = EventStreamHub()
    sub = BranchSubscription(store, hub, "s")
    reader = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    hub.publish_batch(await stored(store, "s", 1, 1))
    assert seqs(await take(sub, 1)) == [1]
    sub.close()


class GatedStore(MemoryEventStore):
    """Reads wait at a gate, so a test can cancel a reader in the middle of one."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()

    async def _read(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> list[EventRecord]:
        self.reading.set()
        await self.gate.wait()
        return await super()._read(session_id, branch_id, start, end, limit)


async def test_cancelling_during_a_store_read_loses_nothing() -> None:
    async with GatedStore() as store:
        await store.append_batch([ev("s", n) for n in range(1, 4)])
        hub = EventStreamHub()
        sub = BranchSubscription(store, hub, "s")
        reader = asyncio.create_task(anext(sub))
        await store.reading.wait()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        store.gate.set()
        assert seqs(await take(sub, 3)) == [1, 2, 3]
        sub.close()


async def test_hub_close_delivers_what_is_in_memory_then_ends(store: MemoryEventStore) -> None:
    hub = EventStreamHub()
    sub = BranchSubscription(store, hub, "s")
    assert await take(sub, 0) == []
    hub.publish_batch(await stored(store, "s", 1, 3))
    assert seqs(await take(sub, 1)) == [1]  # backlog read 1..3; 1..3 also buffered live
    hub.close()
    assert seqs(await drain(sub)) == [2, 3]
    assert sub.closed


async def test_hub_close_ends_a_reader_blocked_in_a_store_read() -> None:
    async with GatedStore() as store:
        hub = EventStreamHub()
        sub = BranchSubscription(store, hub, "s")
        reader = asyncio.create_task(drain(sub))
        await store.reading.wait()
        hub.close()
        await store.close()
        store.gate.set()
        assert await reader == []


async def test_read_errors_surface_while_open_and_end_iteration_once_closed() -> None:
    store = MemoryEventStore()
    await store.close()
    hub = EventStreamHub()
    sub = BranchSubscription(store, hub, "s")
    with pytest.raises(StoreClosed):
        await anext(sub)
    hub.close()
    assert await drain(sub) == []


async def test_all_subscription_recovers_each_branch_in_order_after_its_buffered_events(
    store: MemoryEventStore,
) -> None:
    hub = EventStreamHub(buffer=3)
    sub = AllSubscription(store, hub)
    a = await stored(store, "a", 1, 4)
    b = await stored(store, "b", 1, 2)
    # Buffer: a1 a2 b1; a3 dropped; then b2 and a4 dropped too.
    for event in (a[0], a[1], b[0], a[2], b[1], a[3]):
        hub.publish(event)
    first = await take(sub, 1)
    c = await stored(store, "c", 1, 1)
    hub.publish(c[0])  # enters the freed slot, behind the losses
    rest = await take(sub, 6)
    got = [(e.session_id, e.sequence) for e in first + rest]
    assert sorted(got) == sorted({*got})  # no duplicate
    for session, count in (("a", 4), ("b", 2), ("c", 1)):
        assert [n for s, n in got if s == session] == list(range(1, count + 1))
    hub.publish_batch(a + b)  # stale live copies of recovered events are skipped
    d = await stored(store, "d", 1, 1)
    hub.publish(d[0])
    assert await take(sub, 1) == d
    sub.close()


async def test_all_subscription_recovery_applies_the_kind_filter(store: MemoryEventStore) -> None:
    hub = EventStreamHub(buffer=1)
    sub = AllSubscription(store, hub, kinds=["keep"], session_ids=["s"])
    batch = await store.append_batch([ev("s", n, "keep" if n % 2 else "skip") for n in range(1, 9)])
    hub.publish_batch(batch)
    got = await take(sub, 4)
    assert [(e.sequence, e.kind) for e in got] == [
        (1, "keep"),
        (3, "keep"),
        (5, "keep"),
        (7, "keep"),
    ]
    sub.close()
    assert repr(sub).startswith("<AllSubscription kinds=['keep']")


async def test_bad_arguments_are_refused(store: MemoryEventStore) -> None:
    hub = EventStreamHub()
    with pytest.raises(ValueError, match="after_sequence"):
        BranchSubscription(store, hub, "s", after_sequence=-1)
    with pytest.raises(ValueError, match="session_id"):
        BranchSubscription(store, hub, "bad id")
    with pytest.raises(ValueError, match="page_size"):
        BranchSubscription(store, hub, "s", page_size=0)
    with pytest.raises(ValueError, match="page_size"):
        AllSubscription(store, hub, page_size=0)
    assert hub.statistics().subscribers == 0


async def test_abandoned_subscription_leaves_the_hub_when_collected(
    store: MemoryEventStore,
) -> None:
    hub = EventStreamHub()
    await stored(store, "s", 1, 2)
    async for event in BranchSubscription(store, hub, "s"):
        assert event.sequence == 1
        break  # abandoned mid-stream, never closed
    AllSubscription(store, hub, kinds=["x"])
    gc.collect()
    assert hub.statistics().subscribers == 0
