"""Issue 14 through the journal: record_batch, close, delete, expire, and subscriptions that end."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from eventstore import (
    MAIN,
    BranchClosed,
    BranchNotFound,
    EventStore,
    InvalidEvent,
    MemoryEventStore,
    SequenceConflict,
)
from journal import EventJournal


@pytest.fixture
async def journal(store_factory: object) -> EventJournal:
    factory = store_factory  # type: ignore[assignment]
    async with EventJournal(factory()) as opened:  # type: ignore[operator]
        yield opened  # type: ignore[misc]


async def _drain(sub: object) -> list[int]:
    return [event.sequence async for event in sub]  # type: ignore[attr-defined]


async def test_record_batch_is_one_atomic_batch(journal: EventJournal) -> None:
    await journal.record("s1", "start")
    stored = await journal.record_batch(
        "s1", [("a", 1), ("b", {"x": 2})], metadata={"actor": {"id": "me"}}
    )
    assert [(r.sequence, r.kind, r.data) for r in stored] == [(2, "a", 1), (3, "b", {"x": 2})]
    assert stored[0].metadata == stored[1].metadata == {"actor": {"id": "me"}}
    assert stored[0].metadata is not stored[1].metadata
    assert await journal.read("s1") == [(await journal.read("s1"))[0], *stored]
    more = await journal.record_batch("s1", [("c", None)], expected_sequence=3)
    assert more[0].sequence == 4
    with pytest.raises(SequenceConflict):
        await journal.record_batch("s1", [("d", None)], expected_sequence=3)
    with pytest.raises(InvalidEvent):
        await journal.record_batch("s1", [])
    with pytest.raises(InvalidEvent):
        await journal.record_batch("s1", [("ok", 1), ("", 2)])
    with pytest.raises(InvalidEvent):
        await journal.record_batch("s1", [("ok", 1), ("bad",)])  # type: ignore[list-item]
    with pytest.raises(BranchNotFound):
        await journal.record_batch("s1", [("x", 1)], branch_id="retyr")
    with pytest.raises(BranchNotFound):
        await journal.record("s1", "x", branch_id="retyr")
    assert await journal.head("s1") == 4


async def test_record_batch_publishes(journal: EventJournal) -> None:
    async with journal.subscribe("s1") as sub:
        await journal.record_batch("s1", [("a", 1), ("b", 2)])
        await journal.close_branch("s1")
        assert await asyncio.wait_for(_drain(sub), 10) == [1, 2]


async def test_subscription_of_a_closed_branch_ends_after_its_last_event(
    journal: EventJournal,
) -> None:
    await journal.record("s1", "a")
    async with journal.subscribe("s1") as sub:
        task = asyncio.create_task(_drain(sub))
        await journal.record("s1", "b")
        info = await journal.close_branch("s1")
        assert info.closed
        assert await asyncio.wait_for(task, 10) == [1, 2]
    with pytest.raises(BranchClosed):
        await journal.record("s1", "c")
    # Subscribing later to a closed branch: its history, then the end.
    async with journal.subscribe("s1", after_sequence=1) as late:
        assert await asyncio.wait_for(_drain(late), 10) == [2]


async def test_a_subscriber_far_behind_still_gets_every_event(journal: EventJournal) -> None:
    async with journal.subscribe("s1") as sub:
        await journal.record_batch("s1", [("e", n) for n in range(50)])
        await journal.close_branch("s1")
        assert await asyncio.wait_for(_drain(sub), 10) == list(range(1, 51))


async def test_subscription_on_a_merged_source_ends(journal: EventJournal) -> None:
    await journal.record("s1", "a")
    await journal.create_branch("s1", "side")
    async with journal.subscribe("s1", "side") as sub:
        task = asyncio.create_task(_drain(sub))
        await journal.record("s1", "b", branch_id="side")
        await journal.merge_branch("s1", "side", MAIN)
        assert await asyncio.wait_for(task, 10) == [1, 2]


async def test_delete_session_ends_its_subscriptions(journal: EventJournal) -> None:
    await journal.record("s1", "a")
    await journal.record("s2", "a")
    other = journal.subscribe("s2")
    async with journal.subscribe("s1") as sub, journal.subscribe("s1", after_sequence=1) as idle:
        assert (await sub.__anext__()).sequence == 1
        waiting = asyncio.create_task(_drain(idle))
        await asyncio.sleep(0)
        assert await journal.delete_session("s1") is True
        assert await asyncio.wait_for(waiting, 10) == []
        assert await asyncio.wait_for(_drain(sub), 10) == []
    assert not other.closed
    other.close()
    assert await journal.delete_session("s1") is False
    assert await journal.read("s1") == []
    assert (await journal.record("s1", "again")).sequence == 1


async def test_delete_branch_and_expire_through_the_journal(journal: EventJournal) -> None:
    await journal.record("s1", "a")
    await journal.create_branch("s1", "alt")
    await journal.record("s1", "b", branch_id="alt")
    async with journal.subscribe("s1", "alt") as sub:
        assert (await sub.__anext__()).sequence == 1
        await journal.delete_branch("s1", "alt")
        assert await asyncio.wait_for(_drain(sub), 10) == []
    await journal.record("s2", "a")
    infos = await journal.sessions()
    assert [(i.session_id, i.branches, i.events) for i in infos] == [("s1", 1, 1), ("s2", 1, 1)]
    assert await journal.expire(idle_for=timedelta(days=1)) == []
    async with journal.subscribe("s2") as sub:
        assert (await sub.__anext__()).sequence == 1
        deleted: list[str] = []
        while await journal.sessions():  # the clock may need to move past the writes
            deleted += await journal.expire(idle_for=timedelta(0))
        assert deleted == ["s1", "s2"]
        assert await asyncio.wait_for(_drain(sub), 10) == []
    assert await journal.sessions() == []


async def test_lifecycle_rejects_use_after_close() -> None:
    store: EventStore = MemoryEventStore()
    journal = EventJournal(store)
    await journal.open()
    await journal.close()
    for call in (
        journal.close_branch("s1"),
        journal.delete_session("s1"),
        journal.delete_branch("s1", "b"),
        journal.sessions(),
        journal.expire(idle_for=timedelta(0)),
        journal.record_batch("s1", [("a", 1)]),
    ):
        with pytest.raises(Exception, match="closed"):
            await call
