"""``JournalCheckpointSaver`` beyond the conformance suite: ids, layout, sync calls, reopen."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.base import empty_checkpoint

from eventstore import MAIN, BranchExists, MemoryEventStore
from journal import EventJournal
from journal.integrations._langgraph._threads import session_for, thread_for
from journal.integrations.langgraph import (
    InvalidThreadId,
    JournalCheckpointSaver,
    SyncCallError,
)
from tests.conftest import StoreFactory


def _config(thread: str, checkpoint_id: str | None = None, ns: str = "") -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _checkpoint(**values: Any) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = values
    cp["channel_versions"] = dict.fromkeys(values, 1)
    return cp


async def _put(
    saver: JournalCheckpointSaver, thread: str, parent: str | None, **values: Any
) -> str:
    cp = _checkpoint(**values)
    stored = await saver.aput(_config(thread, parent), cp, {"source": "loop", "step": 0}, {})
    return str(stored["configurable"]["checkpoint_id"])


@pytest.mark.parametrize(
    "thread", ["chat-1", "a b/c", "user@example.com", "é", "lg--x", "-x", "x" * 128, "7"]
)
def test_thread_ids_map_one_to_one(thread: str) -> None:
    session = session_for(thread)
    assert thread_for(session) == thread
    assert len(session) <= 128
    assert (session == thread) == (thread in ("chat-1", "x" * 128, "7"))


def test_thread_ids_that_cannot_be_sessions() -> None:
    with pytest.raises(InvalidThreadId) as info:
        session_for("é" * 40)
    assert info.value.thread_id == "é" * 40 and "77 UTF-8 bytes" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidThreadId):
        session_for("")
    assert session_for(42) == "42"
    for stray in ("lg--1", "lg--ab", "lg--mfrgg"):  # not valid base32, or not canonical
        with pytest.raises(ValueError):
            thread_for(stray)


async def test_a_thread_id_that_is_not_an_identifier_round_trips() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        await _put(saver, "user@example.com/chat 1", None, x=1)
        assert await journal.list_sessions() == [session_for("user@example.com/chat 1")]
        listed = [t async for t in saver.alist(None)]
        assert [t.config["configurable"]["thread_id"] for t in listed] == [
            "user@example.com/chat 1"
        ]
        got = await saver.aget_tuple(_config("user@example.com/chat 1"))
        assert got is not None and got.checkpoint["channel_values"] == {"x": 1}


async def test_records_are_keyed_and_forks_are_branches() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        first = await _put(saver, "t", None, x=1)
        await saver.aput_writes(_config("t", first), [("x", 2)], "task-1")
        second = await _put(saver, "t", first, x=2)
        # Time travel: a child of ``first``, which is no longer the head.
        third = await _put(saver, "t", first, x=3)
        main = await journal.read("t", MAIN)
        assert [(r.kind, r.metadata["key"]) for r in main] == [
            ("langgraph.checkpoint", first),
            ("langgraph.writes", f"writes:{first}"),
            ("langgraph.checkpoint", second),
        ]
        branches = await journal.list_branches("t")
        assert [(b.branch_id, b.parent_branch, b.fork_sequence) for b in branches] == [
            (f"fork-{third}", MAIN, 1),
            (MAIN, None, 0),
        ]
        # The thread's latest checkpoint is the fork's; the next put follows it there.
        latest = await saver.aget_tuple(_config("t"))
        assert latest is not None and latest.checkpoint["id"] == third
        fourth = await _put(saver, "t", third, x=4)
        assert (await journal.get_by_key("t", fourth)).branch_id == f"fork-{third}"  # type: ignore[union-attr]
        assert len(await journal.list_branches("t")) == 2
        # Writes made for ``first`` stay visible from the fork.
        got = await saver.aget_tuple(_config("t", first))
        assert got is not None and got.pending_writes == [("task-1", "x", 2)]


async def test_concurrent_writes_of_one_checkpoint_are_all_kept(
    store_factory: StoreFactory,
) -> None:
    async with EventJournal(store_factory()) as journal:
        saver = JournalCheckpointSaver(journal)
        cid = await _put(saver, "t", None)
        await asyncio.gather(
            *(saver.aput_writes(_config("t", cid), [("ch", n)], f"task-{n}") for n in range(10))
        )
        got = await saver.aget_tuple(_config("t", cid))
        assert got is not None and got.pending_writes is not None
        assert sorted(w[2] for w in got.pending_writes) == list(range(10))


async def test_metadata_that_is_not_json_round_trips() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        cp = _checkpoint()
        metadata: Any = {"source": "loop", "step": 1, "raw": b"\x00\xff", "pair": (1, 2)}
        stored = await saver.aput(_config("t"), cp, metadata, {})
        got = await saver.aget_tuple(stored)
        assert got is not None and got.metadata["raw"] == b"\x00\xff"
        assert tuple(got.metadata["pair"]) == (1, 2)
        assert "$serde" in (await journal.read("t"))[0].data["metadata"]


async def test_pruned_checkpoints_stay_in_the_log() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        first = await _put(saver, "t", None, x=1)
        second = await _put(saver, "t", first, x=2)
        await saver.aprune(["t"])
        assert [t.checkpoint["id"] async for t in saver.alist(_config("t"))] == [second]
        assert await saver.aget_tuple(_config("t", first)) is None
        kinds = [r.kind for r in await journal.read("t")]
        assert kinds == ["langgraph.checkpoint"] * 2 + ["langgraph.deleted"]
        with pytest.raises(ValueError, match="strategy"):
            await saver.aprune(["t"], strategy="oldest")


async def test_copy_into_an_existing_thread_is_refused() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        await _put(saver, "a", None)
        await _put(saver, "b", None)
        with pytest.raises(BranchExists):
            await saver.acopy_thread("a", "b")


async def test_checkpoints_outlive_the_journal(persistent_store_factory: StoreFactory) -> None:
    async with EventJournal(persistent_store_factory()) as journal:
        saver = JournalCheckpointSaver(journal)
        first = await _put(saver, "t", None, x=1)
        await saver.aput_writes(_config("t", first), [("x", "w")], "task")
        second = await _put(saver, "t", first, x=2)
        await _put(saver, "t", first, x=3)
    async with EventJournal(persistent_store_factory()) as journal:
        saver = JournalCheckpointSaver(journal)
        assert [t.checkpoint["channel_values"] async for t in saver.alist(_config("t"))] == [
            {"x": 3},
            {"x": 2},
            {"x": 1},
        ]
        got = await saver.aget_tuple(_config("t", first))
        assert got is not None and got.pending_writes == [("task", "x", "w")]
        # The fork made before the reopen is still the thread's latest.
        latest = await saver.aget_tuple(_config("t"))
        assert latest is not None and latest.checkpoint["channel_values"] == {"x": 3}
        assert latest.parent_config is not None
        assert latest.parent_config["configurable"]["checkpoint_id"] == first
        assert second != latest.checkpoint["id"]


async def test_sync_calls_on_the_loop_are_refused() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        with pytest.raises(SyncCallError, match="own event loop") as info:
            saver.get_tuple(_config("t"))
        assert info.value.method == "get_tuple"
        with pytest.raises(SyncCallError):
            saver.list(_config("t"))
        # From another thread they work, and see what the async API wrote.
        cid = await _put(saver, "t", None, x=1)
        got = await asyncio.to_thread(saver.get_tuple, _config("t"))
        assert got is not None and got.checkpoint["id"] == cid
        assert await asyncio.to_thread(lambda: len(list(saver.list(_config("t"))))) == 1


def test_a_sync_call_before_the_loop_is_known_is_refused() -> None:
    journal = EventJournal(MemoryEventStore())
    saver = JournalCheckpointSaver(journal)
    with pytest.raises(SyncCallError, match="loop"):
        saver.get_tuple(_config("t"))
    # With the loop given, a sync caller in another thread is served by it.
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        asyncio.run_coroutine_threadsafe(journal.open(), loop).result()
        saver = JournalCheckpointSaver(journal, loop=loop)
        config = saver.put(_config("t"), _checkpoint(x=1), {"step": 0}, {})
        saver.put_writes(config, [("x", 5)], "task")
        got = saver.get_tuple(config)
        assert got is not None and got.pending_writes == [("task", "x", 5)]
        saver.delete_thread("t")
        assert saver.get_tuple(config) is None
    finally:
        asyncio.run_coroutine_threadsafe(journal.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


async def test_a_thread_deleted_behind_the_savers_back() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        first = await _put(saver, "t", None, x=1)
        await _put(saver, "t", first, x=2)
        third = await _put(saver, "t", first, x=3)
        assert len(await journal.list_branches("t")) == 2
        await journal.delete_session("t")
        # The saver last wrote on the fork, which is gone: the child goes to main.
        fourth = await _put(saver, "t", third, x=4)
        record = await journal.get_by_key("t", fourth)
        assert record is not None and record.branch_id == MAIN
        got = await saver.aget_tuple(_config("t"))
        assert got is not None and got.checkpoint["channel_values"] == {"x": 4}
