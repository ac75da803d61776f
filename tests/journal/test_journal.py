"""EventJournal: writes that publish, sequence allocation, fold, lifecycle, other writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from eventstore import (
    EventRecord,
    EventStore,
    InvalidEvent,
    InvalidIdentifier,
    MemoryEventStore,
    SequenceConflict,
    StoreClosed,
)
from journal import EventJournal, open_journal
from stream import EventStreamHub
from tests.stream._helpers import drain, ev, seqs, take

StoreFactory = Callable[[], EventStore]


@pytest.fixture
async def journal(store_factory: StoreFactory) -> AsyncIterator[EventJournal]:
    async with EventJournal(store_factory()) as opened:
        yield opened


async def test_concurrent_record_calls_get_distinct_consecutive_sequences(
    journal: EventJournal,
) -> None:
    async def worker(name: int) -> list[EventRecord]:
        return [await journal.record("s", "message", {"w": name, "n": n}) for n in range(20)]

    results = await asyncio.gather(*(worker(n) for n in range(25)))
    recorded = sorted(e.sequence for batch in results for e in batch)
    assert recorded == list(range(1, 501))
    stored = await journal.read("s")
    assert seqs(stored) == list(range(1, 501))
    assert len({e.event_id for e in stored}) == 500
    for batch in results:  # each worker's own calls stay in its order
        assert seqs(batch) == sorted(seqs(batch))


async def test_record_with_stale_expected_sequence_raises(journal: EventJournal) -> None:
    first = await journal.record("s", "message", {"text": "hi"}, expected_sequence=0)
    assert (first.sequence, first.kind, first.data, first.metadata) == (
        1,
        "message",
        {"text": "hi"},
        {},
    )
    second = await journal.record("s", "message", expected_sequence=1, metadata={"actor": "me"})
    assert (second.sequence, second.metadata) == (2, {"actor": "me"})
    with pytest.raises(SequenceConflict) as caught:
        await journal.record("s", "message", expected_sequence=1)
    assert (caught.value.session_id, caught.value.branch_id) == ("s", "main")
    assert (caught.value.expected, caught.value.actual) == (3, 2)
    with pytest.raises(SequenceConflict):
        await journal.record("s", "message", expected_sequence=5)  # ahead of the head
    assert await journal.head("s") == 2


async def test_bad_record_input_fails_before_any_write(journal: EventJournal) -> None:
    with pytest.raises(InvalidIdentifier):
        await journal.record("no/slash", "message")
    with pytest.raises(InvalidEvent):
        await journal.record("s", "")
    with pytest.raises(InvalidEvent):
        await journal.record("s", "message", {1, 2})
    with pytest.raises(ValueError, match="expected_sequence"):
        await journal.record("s", "message", expected_sequence=-1)
    with pytest.raises(InvalidEvent):
        await journal.append("not a record")  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent):
        await journal.append_batch([])
    assert await journal.list_sessions() == []


async def test_append_and_append_batch_store_then_publish(journal: EventJournal) -> None:
    receiver = journal.hub.subscribe("s")
    one = await journal.append(ev("s", 1))
    batch = await journal.append_batch([ev("s", 2), ev("s", 3)])
    assert await take(receiver, 3) == [one, *batch]
    with pytest.raises(SequenceConflict):
        await journal.append(ev("s", 7))
    assert receiver.statistics().current_buffer_used == 0  # refused writes publish nothing
    receiver.close()


async def test_store_operations_pass_through(journal: EventJournal) -> None:
    for n in range(5):
        await journal.record("s", "message", {"n": n})
    info = await journal.create_branch("s", "alt", fork_sequence=2)
    assert (info.parent_branch, info.fork_sequence, info.head) == ("main", 2, 2)
    assert [b.branch_id for b in await journal.list_branches("s")] == ["alt", "main"]
    assert (await journal.branch_info("s", "alt")).fork_sequence == 2
    assert seqs(await journal.read("s", "alt")) == [1, 2]
    assert seqs(await journal.read("s", from_sequence=2, limit=2)) == [2, 3]
    assert seqs([e async for e in journal.iter_events("s", to_sequence=3)]) == [1, 2, 3]
    assert await journal.head("s", "alt") == 2
    assert await journal.list_sessions() == ["s"]
    assert journal.store is not None and isinstance(journal.hub, EventStreamHub)


async def test_fold_streams_to_any_step(journal: EventJournal) -> None:
    for n in range(1, 11):
        await journal.record("s", "add", n)

    def total(state: int, event: EventRecord) -> int:
        return state + event.data

    assert await journal.fold("s", total, 0) == 55
    assert await journal.fold("s", total, 0, to_sequence=4) == 1 + 2 + 3 + 4
    assert await journal.fold("s", total, 0, to_sequence=0) == 0
    await journal.create_branch("s", "alt", fork_sequence=3)
    await journal.record("s", "add", 100, branch_id="alt")
    assert await journal.fold("s", total, 0, branch_id="alt") == 106
    assert await journal.fold("unknown", total, 7) == 7


async def test_operations_after_close_raise_store_closed(store_factory: StoreFactory) -> None:
    journal = EventJournal(store_factory())
    await journal.record("s", "message")  # opens lazily
    await journal.aclose()
    await journal.close()  # idempotent
    assert journal.closed
    with pytest.raises(StoreClosed):
        await journal.record("s", "message")
    with pytest.raises(StoreClosed):
        await journal.read("s")
    with pytest.raises(StoreClosed):
        journal.subscribe_all()
    with pytest.raises(StoreClosed):
        await journal.open()


class RacedMemoryStore(MemoryEventStore):
    """A memory store that loses races to another writer, numbering as the base does.

    ``steal_next`` appends that many foreign events right before a ``mine``
    batch lands, as another process committing between the head read and the
    write would. ``_append_next`` is the base default (head, then retry on a
    conflict), which every backend without its own numbering uses.
    """

    _append_next = EventStore._append_next

    def __init__(self) -> None:
        super().__init__()
        self.steal_next = 0

    async def _append(self, event: EventRecord) -> EventRecord:
        # Every write goes through the race below, single appends included.
        return (await self._append_batch([event]))[0]

    async def _append_batch(self, events: list[EventRecord]) -> list[EventRecord]:
        first = events[0]
        if self.steal_next and first.kind == "mine":
            self.steal_next -= 1
            head = await self._head(first.session_id, first.branch_id)
            foreign = EventRecord.new(first.session_id, first.branch_id, head + 1, "foreign")
            await super()._append_batch([foreign])
        return await super()._append_batch(events)


async def test_commits_the_journal_did_not_make_reach_subscribers() -> None:
    async with (
        EventJournal(MemoryEventStore()) as journal,
        journal.subscribe("s") as sub,
        journal.subscribe_all(kinds=["foreign"]) as all_,
    ):
        mine = await journal.record("s", "message")
        # Another writer of the same store: the store tells the journal.
        theirs = await journal.store.append(EventRecord.new("s", "main", 2, "foreign"))
        assert await take(sub, 2) == [mine, theirs]
        assert await take(all_, 1) == [theirs]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_close_ends_subscriptions_and_leaves_no_task() -> None:
    journal = EventJournal(MemoryEventStore())
    sub = journal.subscribe("s")
    feed = journal.subscribe_all(after=0)  # starts the feed pump
    reader = asyncio.create_task(drain(sub))
    feed_reader = asyncio.create_task(drain(feed))
    await journal.store.append(EventRecord.new("s", "main", 1, "foreign"))
    await asyncio.sleep(0.01)
    await journal.close()
    assert seqs(await reader) == [1]
    assert seqs(await feed_reader) == [1]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_record_retries_conflicts_from_other_writers() -> None:
    store = RacedMemoryStore()
    async with EventJournal(store) as journal:
        store.steal_next = 3
        first = await journal.record("s", "mine")
        assert first.sequence == 4  # three foreign events won 1, 2 and 3
        store.steal_next = 1
        with pytest.raises(SequenceConflict) as caught:
            # An optimistic check is the caller's decision: never retried.
            await journal.record("s", "mine", expected_sequence=4)
        assert (caught.value.expected, caught.value.actual) == (6, 5)
        kinds = [e.kind for e in await journal.read("s")]
        assert kinds == ["foreign", "foreign", "foreign", "mine", "foreign"]


async def test_record_publishes_in_sequence_order_under_concurrency() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        receiver = journal.hub.subscribe("s")
        await asyncio.gather(*(journal.record("s", "message") for _ in range(50)))
        assert seqs(await take(receiver, 50)) == list(range(1, 51))
        receiver.close()


async def test_open_journal_over_the_file_store(tmp_path: Path) -> None:
    from eventstore.file import FileEventStore

    async with open_journal(tmp_path, durability="write") as journal:
        assert isinstance(journal.store, FileEventStore)
        async with journal.subscribe("s") as sub:
            written = await journal.record("s", "message", {"text": "kept"})
            assert await take(sub, 1) == [written]
    assert journal.closed
    assert (tmp_path / "s" / "main.jsonl").exists()
    hub = EventStreamHub(buffer=8)
    async with open_journal(tmp_path, hub=hub) as reopened:
        assert reopened.hub is hub
        assert await reopened.read("s") == [written]
    assert hub.closed
