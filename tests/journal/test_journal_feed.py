"""Issue 13 in the journal: record_batch, record without a lock, kinds filters,
and subscribe_all resumable from a feed position."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from eventstore import EventRecord, EventStore, InvalidEvent, MemoryEventStore, SequenceConflict
from journal import EventJournal
from stream import EventStreamHub
from tests.stream._helpers import GUARD_SECONDS, seqs, take

StoreFactory = Callable[[], EventStore]


@pytest.fixture
async def journal(store_factory: StoreFactory) -> AsyncIterator[EventJournal]:
    async with EventJournal(store_factory()) as opened:
        yield opened


async def test_record_batch_is_one_atomic_batch(journal: EventJournal) -> None:
    await journal.record("s", "start")
    meta = {"actor": "agent"}
    stored = await journal.record_batch(
        "s", [("call", {"tool": "ls"}), ("result", ["a", "b"])], metadata=meta
    )
    assert seqs(stored) == [2, 3]
    assert [(r.kind, r.data, r.metadata) for r in stored] == [
        ("call", {"tool": "ls"}, meta),
        ("result", ["a", "b"], meta),
    ]
    assert stored[0].metadata is not stored[1].metadata
    assert await journal.read("s", from_sequence=2) == stored
    more = await journal.record_batch("s", [("x", None)], expected_sequence=3)
    assert seqs(more) == [4]
    with pytest.raises(SequenceConflict):
        await journal.record_batch("s", [("x", None), ("y", None)], expected_sequence=3)
    assert await journal.head("s") == 4


@pytest.mark.parametrize("items", [[], [("only-kind",)], ["ab"], [("", None)], [("k", {1, 2})]])
async def test_record_batch_refuses_bad_items(journal: EventJournal, items: list[object]) -> None:
    with pytest.raises(InvalidEvent):
        await journal.record_batch("s", items)  # type: ignore[arg-type]
    assert await journal.head("s") == 0


async def test_concurrent_records_never_conflict(journal: EventJournal) -> None:
    stored = await asyncio.gather(*(journal.record("s", "m", {"n": n}) for n in range(100)))
    assert sorted(seqs(list(stored))) == list(range(1, 101))
    positions = [r.position for r in stored]
    assert len(set(positions)) == 100


async def test_subscribe_filters_kinds_before_delivery(journal: EventJournal) -> None:
    await journal.record_batch("s", [("a", 1), ("b", 2), ("a", 3)])
    async with journal.subscribe("s", kinds=["a"]) as sub:
        await journal.record_batch("s", [("b", 4), ("b", 5), ("a", 6)])
        got = await take(sub, 3)
        assert [(r.kind, r.data) for r in got] == [("a", 1), ("a", 3), ("a", 6)]
        assert sub.position == 6  # type: ignore[attr-defined]


async def test_subscribe_all_from_a_position_backlog_then_live(journal: EventJournal) -> None:
    first = await journal.record("s1", "m")
    second = await journal.record("s2", "m")
    async with journal.subscribe_all(after=0) as sub:
        assert await take(sub, 2) == [first, second]
        third = await journal.record("s1", "m")
        assert await take(sub, 1) == [third]
    async with journal.subscribe_all(after=first.position) as resumed:
        assert await take(resumed, 2) == [second, third]
    async with journal.subscribe_all(after=third.position) as caught_up:
        fourth = await journal.record("s3", "m")
        assert await take(caught_up, 1) == [fourth]


async def test_subscribe_all_filters(journal: EventJournal) -> None:
    async with journal.subscribe_all(after=0, kinds=["keep"], session_ids=["a", "b"]) as sub:
        await journal.record("a", "keep")
        await journal.record("a", "drop")
        await journal.record("c", "keep")
        await journal.record_batch("b", [("keep", 1), ("drop", 2), ("keep", 3)])
        got = await take(sub, 3)
        assert [(r.session_id, r.kind, r.data) for r in got] == [
            ("a", "keep", None),
            ("b", "keep", 1),
            ("b", "keep", 3),
        ]


async def test_subscribe_all_while_writers_run_has_no_gap_and_no_duplicate(
    journal: EventJournal,
) -> None:
    async def writer(n: int) -> None:
        for _ in range(20):
            await journal.record(f"w{n}", "m")
            await asyncio.sleep(0)

    writers = [asyncio.create_task(writer(n)) for n in range(4)]
    await asyncio.sleep(0)
    async with journal.subscribe_all(after=0) as sub:
        got = await take(sub, 80)
    await asyncio.gather(*writers)
    positions = [r.position for r in got]
    assert positions == sorted(set(positions))
    assert got == await journal.read_feed()


@pytest.mark.parametrize("after", [-1, 1.5, "3", True])
async def test_subscribe_all_refuses_a_bad_position(journal: EventJournal, after: object) -> None:
    with pytest.raises(ValueError):
        journal.subscribe_all(after=after)  # type: ignore[arg-type]


async def test_a_slow_feed_subscriber_rereads_from_the_feed() -> None:
    async with (
        EventJournal(MemoryEventStore(), EventStreamHub(buffer=2)) as journal,
        journal.subscribe_all(after=0, kinds=["m"]) as sub,
    ):
        await journal.record("s", "m")
        await take(sub, 1)
        await asyncio.sleep(0.01)  # the pump follows: what follows comes live, and overflows
        for n in range(50):
            await journal.record(f"s{n % 3}", "m" if n % 5 else "other", {"n": n})
        stats = sub.statistics()
        assert stats.current_buffer_used <= 2
        got = await take(sub, 40)
        assert [r.position for r in got] == sorted({r.position for r in got})
        assert got == (await journal.read_feed(kinds=["m"]))[1:]
        assert sub.statistics().dropped > 0


async def test_feed_subscriber_records_are_its_own() -> None:
    async with (
        EventJournal(MemoryEventStore()) as journal,
        journal.subscribe_all(after=0) as one,
        journal.subscribe_all(after=0) as two,
    ):
        await asyncio.sleep(0)  # both caught up: the next record comes live
        await asyncio.wait_for(asyncio.sleep(0), GUARD_SECONDS)
        record = await journal.record("s", "m", {"list": [1]})
        mine = (await take(one, 1))[0]
        mine.data["list"].append(2)
        theirs = (await take(two, 1))[0]
        assert theirs.data == {"list": [1]} == record.data


async def test_store_writes_reach_feed_subscribers() -> None:
    async with EventJournal(MemoryEventStore()) as journal, journal.subscribe_all(after=0) as sub:
        record = await journal.store.append(EventRecord.new("s", "main", 1, "m"))
        assert await take(sub, 1) == [record]
