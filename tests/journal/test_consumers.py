"""Durable consumers (issue 15) on every backend: delivery, checkpoints, retries,
dead letters, leases, reset and lag."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from eventstore import DeadLetter, EventRecord, EventStore, InvalidIdentifier
from journal import Consumer, ConsumerBusy, EventJournal

StoreFactory = Callable[[], EventStore]


@pytest.fixture
async def journal(store_factory: StoreFactory) -> AsyncIterator[EventJournal]:
    async with EventJournal(store_factory()) as opened:
        yield opened


class Poison(Exception):
    pass


def collector(seen: list[EventRecord], poison: str | None = None):  # type: ignore[no-untyped-def]
    async def handler(event: EventRecord) -> None:
        if poison is not None and event.data == {"text": poison}:
            raise Poison(f"cannot index {poison}")
        seen.append(event)

    return handler


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


async def test_run_until_idle_delivers_in_position_order(journal: EventJournal) -> None:
    for i in range(5):
        await journal.record(f"s{i % 2}", "message", {"text": str(i)})
    seen: list[EventRecord] = []
    consumer = journal.consumer("index", collector(seen))
    assert await consumer.run_until_idle() == 5
    positions = [e.position for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert consumer.position == positions[-1]
    assert await consumer.lag() == 0
    assert await consumer.run_until_idle() == 0


async def test_filters_and_checkpoint_survive_a_new_instance(journal: EventJournal) -> None:
    await journal.record("a", "message", {"text": "1"})
    await journal.record("a", "tool", {"text": "2"})
    await journal.record("b", "message", {"text": "3"})
    seen: list[EventRecord] = []
    consumer = journal.consumer("msgs", collector(seen), kinds=["message"], session_ids=["a"])
    assert await consumer.run_until_idle() == 1
    assert consumer.position == await journal.store.feed_head()
    await journal.record("a", "message", {"text": "4"})
    again: list[EventRecord] = []
    later = journal.consumer("msgs", collector(again), kinds=["message"], session_ids=["a"])
    assert await later.lag() == 1
    assert await later.run_until_idle() == 1
    assert [e.data for e in again] == [{"text": "4"}]
    infos = await journal.store.consumers()
    assert [(i.name, i.position, i.dead_letters, i.holder) for i in infos] == [
        ("msgs", later.position, 0, None)
    ]


async def test_poison_is_dead_lettered_and_retried(journal: EventJournal) -> None:
    for text in ("ok", "bad", "fine"):
        await journal.record("s", "message", {"text": text})
    seen: list[EventRecord] = []
    consumer = Consumer(
        journal.store, "idx", collector(seen, poison="bad"), max_attempts=3, sleep=no_sleep
    )
    assert await consumer.run_until_idle() == 3
    assert [e.data["text"] for e in seen] == ["ok", "fine"]
    (letter,) = await consumer.dead_letters()
    assert isinstance(letter, DeadLetter)
    assert (letter.consumer, letter.session_id, letter.sequence, letter.attempts) == (
        "idx",
        "s",
        2,
        3,
    )
    assert (letter.error_type, letter.error_message) == ("Poison", "cannot index bad")
    assert letter.first_failed_at <= letter.last_failed_at
    # Still poison: stays, with the new failure.
    assert await consumer.retry_dead_letters() == 0
    (again,) = await consumer.dead_letters()
    assert (again.attempts, again.first_failed_at) == (6, letter.first_failed_at)
    fixed: list[EventRecord] = []
    healed = Consumer(journal.store, "idx", collector(fixed), sleep=no_sleep)
    assert await healed.retry_dead_letters() == 1
    assert [e.data["text"] for e in fixed] == ["bad"]
    assert await healed.dead_letters() == []


async def test_backoff_is_exponential_capped_and_jittered(journal: EventJournal) -> None:
    await journal.record("s", "message", {"text": "bad"})
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    consumer = Consumer(
        journal.store,
        "b",
        collector([], poison="bad"),
        max_attempts=6,
        backoff=1.0,
        max_backoff=10.0,
        sleep=fake_sleep,
        jitter=lambda: 1.0,
    )
    await consumer.run_until_idle()
    assert slept == [1.0, 2.0, 4.0, 8.0, 10.0]
    low = Consumer(journal.store, "c", collector([]), backoff=1.0, jitter=lambda: 0.0)
    assert [low.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


async def test_lease_is_exclusive(journal: EventJournal) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(event: EventRecord) -> None:
        started.set()
        await release.wait()

    await journal.record("s", "message", {"text": "x"})
    first = journal.consumer("one", slow)
    run = asyncio.create_task(first.run_until_idle())
    await started.wait()
    second = journal.consumer("one", collector([]), wait=False)
    with pytest.raises(ConsumerBusy) as caught:
        await second.run_until_idle()
    assert caught.value.name == "one"
    holders = [i.holder for i in await journal.store.consumers()]
    assert holders[0] is not None
    release.set()
    assert await run == 1
    assert await second.run_until_idle() == 0


async def test_background_run_is_live_and_stops_gracefully(journal: EventJournal) -> None:
    seen: list[EventRecord] = []
    got = asyncio.Event()

    async def handler(event: EventRecord) -> None:
        seen.append(event)
        if len(seen) == 3:
            got.set()

    consumer = journal.consumer("live", handler)
    async with consumer:
        for i in range(3):
            await journal.record("s", "message", {"text": str(i)})
        await asyncio.wait_for(got.wait(), 10)
        await journal.record("s", "message", {"text": "3"})
        assert await consumer.run_until_idle() >= 0
        assert len(seen) == 4
    assert (await (await journal.store.consumer_state("live")).position()) == seen[-1].position
    assert [i.holder for i in await journal.store.consumers()] == [None]


async def test_reset_redelivers(journal: EventJournal) -> None:
    for i in range(3):
        await journal.record("s", "message", {"text": str(i)})
    seen: list[EventRecord] = []
    consumer = journal.consumer("r", collector(seen))
    await consumer.run_until_idle()
    await consumer.reset(seen[0].position)
    assert consumer.position == seen[0].position
    assert await consumer.lag() == 2
    assert await consumer.run_until_idle() == 2
    with pytest.raises(ValueError, match="position"):
        await consumer.reset(-1)


async def test_bad_arguments(journal: EventJournal) -> None:
    with pytest.raises(InvalidIdentifier):
        journal.consumer("no/slash", collector([]))
    with pytest.raises(ValueError, match="max_attempts"):
        journal.consumer("x", collector([]), max_attempts=0)
    with pytest.raises(ValueError, match="lease_seconds"):
        journal.consumer("x", collector([]), lease_seconds=0)


async def test_stop_during_a_backoff_leaves_the_record_unacknowledged(
    journal: EventJournal,
) -> None:
    failed = asyncio.Event()

    async def failing(event: EventRecord) -> None:
        failed.set()
        raise Poison("later")

    await journal.record("s", "message", {"text": "x"})
    consumer = journal.consumer("slow", failing, backoff=3600.0)
    async with consumer:
        await asyncio.wait_for(failed.wait(), 10)
    assert consumer.position == 0
    assert await consumer.dead_letters() == []
    assert await consumer.lag() == 1
    # Usable again after the stop.
    assert await consumer.reset(0) is None
