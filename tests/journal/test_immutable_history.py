"""Issue 20: no caller, reader or subscriber can change recorded history.

Also: ``open_journal`` is not a generator, so ``loop.shutdown_asyncgens()`` (run
by frameworks' sync entry points between runs) cannot close it.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

from eventstore import MAIN, EventRecord
from journal import EventJournal, open_journal
from stream import EventStreamHub
from tests.conftest import StoreFactory
from tests.stream._helpers import take


def payload() -> dict[str, Any]:
    return {"a": [1], "nested": {"k": "v"}}


def flat() -> dict[str, Any]:
    return {"text": "hi", "n": 1}


def vandalise(record: EventRecord) -> None:
    data = record.data
    if "a" in data:
        data["a"].append("changed")
        data["nested"]["k"] = "changed"
    data["added"] = True
    record.metadata["added"] = True


async def test_callers_readers_and_subscribers_cannot_change_history(
    store_factory: StoreFactory,
) -> None:
    async with EventJournal(store_factory()) as journal:
        # Two live subscribers per branch and one of everything: one mutates,
        # the others must still see the original.
        first, second = journal.subscribe("s1"), journal.subscribe("s1")
        everything = journal.subscribe_all()
        argument, meta = payload(), {"tags": ["x"]}
        recorded = await journal.record("s1", "message", argument, metadata=meta)
        argument["a"].append("changed")
        argument["added"] = True
        meta["tags"].append("changed")
        vandalise(recorded)
        flat_argument = flat()
        flat_recorded = await journal.record("s1", "message", flat_argument)
        flat_argument["added"] = True
        vandalise(flat_recorded)
        appended = EventRecord.new("s1", MAIN, 3, "message", payload())
        returned = await journal.append(appended)
        vandalise(appended)
        vandalise(returned)
        for read in await journal.read("s1"):
            vandalise(read)
        async for streamed in journal.iter_events("s1"):
            vandalise(streamed)

        for event in await take(first, 3):
            vandalise(event)
        expected = [payload(), flat(), payload()]
        assert [e.data for e in await take(second, 3)] == expected
        assert [e.data for e in await take(everything, 3)] == expected
        assert [r.data for r in await journal.read("s1")] == expected
        stored = await journal.read("s1")
        assert stored[0].metadata == {"tags": ["x"]}
        assert stored[1].metadata == {} and stored[2].metadata == {}
        # A late subscriber's backlog comes from the store: also the original.
        async with journal.subscribe("s1") as late:
            assert [e.data for e in await take(late, 3)] == expected
        for subscription in (first, second, everything):
            subscription.close()


async def test_merged_events_reach_subscribers_as_private_copies(
    store_factory: StoreFactory,
) -> None:
    async with EventJournal(store_factory()) as journal:
        await journal.record("s1", "message", payload())
        await journal.create_branch("s1", "alt")
        await journal.record("s1", "message", payload(), branch_id="alt")
        first, second = (
            journal.subscribe("s1", after_sequence=1),
            journal.subscribe("s1", after_sequence=1),
        )
        await journal.merge_branch("s1", "alt", MAIN)
        (mine,) = await take(first, 1)
        vandalise(mine)
        mine.metadata["merged_from"]["sequence"] = -1
        (theirs,) = await take(second, 1)
        assert theirs.data == payload()
        assert theirs.metadata["merged_from"]["sequence"] == 2
        assert "added" not in theirs.metadata
        assert (await journal.read("s1"))[1].metadata == theirs.metadata
        first.close()
        second.close()


async def test_hub_delivers_a_copy_per_receiver() -> None:
    async with EventStreamHub() as hub:
        mine, theirs, all_of_it = hub.subscribe("s1"), hub.subscribe("s1"), hub.subscribe_all()
        published = EventRecord.new("s1", MAIN, 1, "message", payload(), metadata={"m": [1]})
        hub.publish(published)
        vandalise(published)
        published.metadata["m"].append(2)
        vandalise(mine.receive_nowait())
        for receiver in (theirs, all_of_it):
            got = await receiver.receive()
            assert got.data == payload() and got.metadata == {"m": [1]}
            assert got.event_id == published.event_id and got.sequence == 1


def test_open_journal_survives_shutdown_asyncgens(tmp_path: Path) -> None:
    # Like a framework's run_sync: one loop, several runs, async generators
    # shut down after each.
    loop = asyncio.new_event_loop()
    run = loop.run_until_complete
    try:
        journal = run(open_journal(tmp_path, durability="write").__aenter__())
        subscription = journal.subscribe("s1")
        run(journal.record("s1", "message", {"n": 1}))
        run(loop.shutdown_asyncgens())
        assert not journal.closed
        with warnings.catch_warnings():
            # The file store's reads still page through an internal async
            # generator: after the shutdown each read warns, yet reads in full.
            warnings.filterwarnings(
                "ignore", r"asynchronous generator .*FileEventStore\._stream", ResourceWarning
            )
            run(journal.record("s1", "message", {"n": 2}))
            assert [e.data for e in run(take(subscription, 2))] == [{"n": 1}, {"n": 2}]
            assert [r.data for r in run(journal.read("s1"))] == [{"n": 1}, {"n": 2}]
            run(journal.__aexit__(None, None, None))
        assert journal.closed and subscription.closed
    finally:
        loop.close()


async def test_open_journal_as_a_context_manager(tmp_path: Path) -> None:
    async with open_journal(tmp_path) as journal:
        await journal.record("s1", "message", {"n": 1})
    assert journal.closed
    async with open_journal(tmp_path, read_only=True) as reader:
        assert [r.data for r in await reader.read("s1")] == [{"n": 1}]
