"""Issue 16: a hub wakes a busy receiver once per ``wake_interval``, not once per event."""

from __future__ import annotations

import asyncio
import time

import pytest

from eventstore import MemoryEventStore
from journal import EventJournal
from stream import EventReceiver, EventStreamHub
from stream._hub import EAGER_WAKES
from tests.stream._helpers import drain, ev, seqs, take

#: Long enough that no test races it on a loaded machine.
INTERVAL = 0.3


async def _spin(turns: int = 5) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


def _reader(receiver: EventReceiver, got: list[int]) -> asyncio.Task[None]:
    async def read() -> None:
        async for event in receiver:
            got.append(event.sequence)

    return asyncio.create_task(read())


def _crowd(hub: EventStreamHub, count: int = EAGER_WAKES + 1) -> list[list[int]]:
    """``count`` readers of session ``s``: enough that their wake-ups are batched."""
    gots: list[list[int]] = [[] for _ in range(count)]
    for got in gots:
        _reader(hub.subscribe("s"), got)
    return gots


async def test_the_first_event_after_a_quiet_interval_wakes_at_once() -> None:
    async with EventStreamHub(wake_interval=INTERVAL) as hub:
        gots = _crowd(hub)
        await _spin()
        hub.publish(ev("s", 1))
        await _spin()
        assert gots == [[1]] * len(gots)


async def test_events_within_the_interval_arrive_together_at_its_end() -> None:
    async with EventStreamHub(wake_interval=INTERVAL) as hub:
        gots = _crowd(hub)
        await _spin()
        hub.publish(ev("s", 1))
        await _spin()
        for n in range(2, 6):
            hub.publish(ev("s", n))
        await _spin()
        # Buffered, not yet delivered: the readers were woken less than INTERVAL ago.
        assert gots == [[1]] * len(gots)
        assert hub.statistics().published == 5
        async with asyncio.timeout(10):
            while any(len(got) < 5 for got in gots):
                await asyncio.sleep(INTERVAL / 10)
        assert gots == [[1, 2, 3, 4, 5]] * len(gots)


async def test_a_few_receivers_are_woken_at_once_whatever_the_interval() -> None:
    async with EventStreamHub(wake_interval=INTERVAL) as hub:
        gots = _crowd(hub, EAGER_WAKES)
        await _spin()
        for n in range(1, 4):
            hub.publish(ev("s", n))
            await _spin()
            assert gots == [list(range(1, n + 1))] * len(gots)


async def test_a_publish_after_the_due_time_wakes_at_once_if_the_timer_could_not_run() -> None:
    async with EventStreamHub(wake_interval=0.05) as hub:
        gots = _crowd(hub)
        await _spin()
        hub.publish(ev("s", 1))
        await _spin()
        hub.publish(ev("s", 2))  # due in 50 ms, by a timer
        time.sleep(0.1)  # a loop blocked by its writer: the timer cannot run
        hub.publish(ev("s", 3))
        await _spin()
        assert gots == [[1, 2, 3]] * len(gots)


async def test_a_zero_interval_wakes_on_every_publish() -> None:
    async with EventStreamHub(wake_interval=0) as hub:
        gots = _crowd(hub)
        await _spin()
        for n in range(1, 4):
            hub.publish(ev("s", n))
            await _spin()
            assert gots == [list(range(1, n + 1))] * len(gots)


async def test_a_receiver_polled_without_waiting_sees_events_at_once() -> None:
    async with EventStreamHub(wake_interval=INTERVAL) as hub:
        receiver = hub.subscribe("s")
        hub.publish(ev("s", 1))
        hub.publish(ev("s", 2))
        assert receiver.receive_nowait().sequence == 1
        assert seqs(await take(receiver, 1)) == [2]


async def test_closing_the_hub_wakes_pending_receivers_without_waiting() -> None:
    hub = EventStreamHub(wake_interval=1.0)
    _crowd(hub)
    receiver = hub.subscribe("s")
    waiting = asyncio.create_task(drain(receiver))
    await _spin()
    hub.publish(ev("s", 1))
    await _spin()
    hub.publish(ev("s", 2))  # due in a second
    hub.close()
    async with asyncio.timeout(0.5):  # before the flush the interval would have waited for
        assert seqs(await waiting) == [1, 2]


async def test_a_journal_subscription_gets_every_event_in_order_across_intervals() -> None:
    async with EventJournal(MemoryEventStore(), EventStreamHub(wake_interval=0.01)) as journal:
        subscriptions = [journal.subscribe("s") for _ in range(EAGER_WAKES + 2)]
        consumers = [asyncio.create_task(take(sub, 50)) for sub in subscriptions]
        for n in range(1, 51):
            await journal.record("s", "message", {"n": n})
            if n % 7 == 0:
                await asyncio.sleep(0.004)
        for consumer in consumers:
            assert seqs(await consumer) == list(range(1, 51))
        for subscription in subscriptions:
            subscription.close()


@pytest.mark.parametrize("bad", [-0.1, 2.0, "0.1", None])
async def test_bad_wake_intervals_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="wake_interval"):
        EventStreamHub(wake_interval=bad)  # type: ignore[arg-type]
