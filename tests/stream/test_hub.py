"""EventStreamHub and EventReceiver: routing, bounded buffers, close semantics."""

from __future__ import annotations

import asyncio
import gc

import pytest
from anyio import ClosedResourceError, EndOfStream, WouldBlock

from eventstore import InvalidIdentifier
from stream import EventStreamHub

from ._helpers import drain, ev, seqs, take


async def test_routes_by_session_and_branch() -> None:
    async with EventStreamHub() as hub:
        a_main = hub.subscribe("a")
        a_fork = hub.subscribe("a", "fork")
        b_main = hub.subscribe("b")
        hub.publish(ev("a", 1))
        hub.publish(ev("a", 2, branch="fork"))
        hub.publish(ev("b", 1))
        hub.publish(ev("c", 1))
        assert [(e.session_id, e.branch_id) for e in await take(a_main, 1)] == [("a", "main")]
        assert [(e.session_id, e.branch_id) for e in await take(a_fork, 1)] == [("a", "fork")]
        assert [(e.session_id, e.sequence) for e in await take(b_main, 1)] == [("b", 1)]
        for receiver in (a_main, a_fork, b_main):
            with pytest.raises(WouldBlock):
                receiver.receive_nowait()
        assert hub.statistics().published == 4


async def test_subscribe_all_filters_kinds_and_sessions() -> None:
    async with EventStreamHub() as hub:
        everything = hub.subscribe_all()
        tools = hub.subscribe_all(kinds=["tool_call"])
        a_only = hub.subscribe_all(session_ids={"a"})
        a_tools = hub.subscribe_all(kinds="tool_call", session_ids=["a", "b"])
        published = [
            ev("a", 1, "message"),
            ev("a", 2, "tool_call"),
            ev("b", 1, "tool_call"),
            ev("c", 1, "tool_call"),
            ev("c", 2, "message"),
        ]
        hub.publish_batch(published)
        hub.close()
        assert await drain(everything) == published
        assert await drain(tools) == [e for e in published if e.kind == "tool_call"]
        assert await drain(a_only) == published[:2]
        assert await drain(a_tools) == published[1:3]


async def test_full_buffer_drops_for_that_receiver_only_and_never_blocks() -> None:
    async with EventStreamHub(buffer=2) as hub:
        slow = hub.subscribe("s")
        roomy_hub_receiver = hub.subscribe_all()
        for n in range(1, 6):
            hub.publish(ev("s", n))  # synchronous: returns even though `slow` is full
            await take(roomy_hub_receiver, 1)
        stats = slow.statistics()
        assert (stats.current_buffer_used, stats.dropped, stats.lagged) == (2, 3, True)
        assert slow.lagged and not roomy_hub_receiver.lagged
        assert seqs(await take(slow, 2)) == [1, 2]
        hub_stats = hub.statistics()
        assert (hub_stats.subscribers, hub_stats.dropped, hub_stats.lagged_subscribers) == (2, 3, 1)
        assert hub_stats.max_buffer_size == 2


async def test_close_drains_buffers_then_ends_every_receiver() -> None:
    hub = EventStreamHub()
    receiver = hub.subscribe("s")
    waiting = hub.subscribe("t")
    waiter = asyncio.create_task(drain(waiting))
    await asyncio.sleep(0)  # let the waiter block on its empty buffer
    hub.publish(ev("s", 1))
    hub.publish(ev("s", 2))
    await hub.aclose()
    assert hub.closed and receiver.closed
    assert seqs(await drain(receiver)) == [1, 2]
    with pytest.raises(EndOfStream):
        receiver.receive_nowait()
    assert await waiter == []
    hub.publish(ev("s", 3))  # a writer never fails because readers are gone
    assert hub.statistics().published == 2
    with pytest.raises(ClosedResourceError):
        hub.subscribe("s")
    with pytest.raises(ClosedResourceError):
        hub.subscribe_all()


async def test_closed_receiver_leaves_the_hub_and_refuses_reads() -> None:
    async with EventStreamHub() as hub:
        async with hub.subscribe("s") as receiver, hub.subscribe_all(session_ids=["s"]) as other:
            assert hub.statistics().subscribers == 2
        assert hub.statistics().subscribers == 0
        with pytest.raises(ClosedResourceError):
            receiver.receive_nowait()
        with pytest.raises(ClosedResourceError):
            await other.receive()
        assert [e async for e in receiver] == []


async def test_closing_a_receiver_wakes_its_waiting_reader() -> None:
    async with EventStreamHub() as hub:
        receiver = hub.subscribe("s")
        reader = asyncio.create_task(drain(receiver))
        await asyncio.sleep(0)
        await receiver.aclose()
        assert await reader == []


async def test_abandoned_receiver_leaves_the_hub_when_collected() -> None:
    async with EventStreamHub() as hub:
        hub.subscribe("s")
        hub.subscribe_all(kinds=["x"])
        gc.collect()
        assert hub.statistics().subscribers == 0
        hub.publish(ev("s", 1))


async def test_cancelled_receive_loses_nothing() -> None:
    async with EventStreamHub() as hub:
        receiver = hub.subscribe("s")
        pending = asyncio.create_task(receiver.receive())
        await asyncio.sleep(0)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        hub.publish(ev("s", 1))
        assert (await receiver.receive()).sequence == 1


async def test_two_readers_share_one_receiver_and_cancelling_one_spares_the_other() -> None:
    async with EventStreamHub() as hub:
        receiver = hub.subscribe("s")
        first = asyncio.create_task(receiver.receive())
        second = asyncio.create_task(receiver.receive())
        await asyncio.sleep(0)
        first.cancel()
        hub.publish(ev("s", 1))
        assert (await second).sequence == 1
        assert first.cancelled()


async def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="buffer"):
        EventStreamHub(buffer=0)
    async with EventStreamHub() as hub:
        with pytest.raises(InvalidIdentifier):
            hub.subscribe("../etc")
        with pytest.raises(InvalidIdentifier):
            hub.subscribe_all(session_ids=["bad id"])
        with pytest.raises(TypeError):
            hub.subscribe_all(kinds=[""])
        assert hub.statistics().subscribers == 0


async def test_publish_touches_only_matching_receivers() -> None:
    # Routing is by (session, branch): 10,000 receivers elsewhere see nothing.
    async with EventStreamHub(buffer=1) as hub:
        others = [hub.subscribe(f"other-{n}") for n in range(10_000)]
        mine = hub.subscribe("mine")
        for n in range(1, 3):
            hub.publish(ev("mine", n))
        assert all(r.statistics().current_buffer_used == 0 for r in others)
        assert mine.statistics().dropped == 1
        assert repr(mine).startswith("<EventReceiver mine/main open")
