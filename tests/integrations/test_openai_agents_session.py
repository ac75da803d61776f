"""JournalSession answers as the SDK's own SQLiteSession does, on every backend."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("agents")

from agents.memory import SessionSettings
from agents.memory.sqlite_session import SQLiteSession

from eventstore import InvalidEvent
from journal import EventJournal
from journal.integrations.openai_agents import JournalSession
from tests.conftest import StoreFactory

# PostgreSQL's jsonb refuses NUL; surrogates are not UTF-8.
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
_ITEMS = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"]), "content": _TEXT},
    optional={"n": st.integers(-(2**53), 2**53), "ok": st.booleans()},
)
_OPS = st.one_of(
    st.tuples(st.just("add"), st.lists(_ITEMS, max_size=4)),
    st.tuples(st.just("get"), st.one_of(st.none(), st.integers(-2, 8))),
    st.tuples(st.just("pop"), st.none()),
    st.tuples(st.just("clear"), st.none()),
)
_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


async def _apply(session: Any, op: str, arg: Any) -> Any:
    if op == "add":
        return await session.add_items(arg)
    if op == "get":
        return await session.get_items(arg)
    if op == "pop":
        return await session.pop_item()
    return await session.clear_session()


@_SETTINGS
@given(ops=st.lists(_OPS, max_size=30))
async def test_same_answers_as_sqlite_session(
    store_factory: StoreFactory, ops: list[tuple[str, Any]]
) -> None:
    session_id = f"conv {uuid.uuid4()}"  # not an identifier: exercises the id mapping
    peer = SQLiteSession(session_id)
    try:
        async with EventJournal(store_factory()) as journal:
            ours = JournalSession(session_id, journal)
            other = JournalSession(session_id, journal)  # a second instance: no stale cache
            for step, (op, arg) in enumerate(ops):
                session = ours if step % 3 else other
                assert await _apply(session, op, arg) == await _apply(peer, op, arg), (step, op)
            assert await ours.get_items() == await peer.get_items()
    finally:
        peer.close()


async def test_history_is_append_only(store_factory: StoreFactory) -> None:
    async with EventJournal(store_factory()) as journal:
        session = JournalSession("chat-1", journal)
        await session.add_items([{"role": "user", "content": "a"}])
        await session.add_items([{"role": "user", "content": "b"}])
        assert await session.pop_item() == {"role": "user", "content": "b"}
        await session.clear_session()
        assert await session.get_items() == []
        records = await journal.read("chat-1")
        assert [r.kind for r in records] == ["item", "item", "item_popped", "cleared"]
        assert records[2].data == {"sequence": 2, "event_id": records[1].event_id}


async def test_pop_on_empty_and_clear_on_empty_write_nothing(store_factory: StoreFactory) -> None:
    async with EventJournal(store_factory()) as journal:
        session = JournalSession("chat-2", journal)
        assert await session.pop_item() is None
        await session.clear_session()
        await session.add_items([])
        assert await journal.head("chat-2") == 0


async def test_settings_limit_and_reopen(persistent_store_factory: StoreFactory) -> None:
    items = [{"role": "user", "content": str(i)} for i in range(6)]
    async with EventJournal(persistent_store_factory()) as journal:
        session = JournalSession("chat-3", journal, session_settings=SessionSettings(limit=2))
        await session.add_items(items)
        await session.pop_item()
        assert await session.get_items() == items[3:5]
        assert await session.get_items(limit=4) == items[1:5]
    async with EventJournal(persistent_store_factory()) as journal:
        assert await JournalSession("chat-3", journal).get_items() == items[:5]


async def test_a_branch_continues_a_forked_conversation() -> None:
    from eventstore import MemoryEventStore

    async with EventJournal(MemoryEventStore()) as journal:
        main = JournalSession("chat-4", journal)
        await main.add_items([{"role": "user", "content": str(i)} for i in range(3)])
        await journal.create_branch("chat-4", "retry", fork_sequence=2)
        fork = JournalSession("chat-4", journal, branch_id="retry")
        await fork.add_items([{"role": "user", "content": "x"}])
        assert [i["content"] for i in await fork.get_items()] == ["0", "1", "x"]
        assert [i["content"] for i in await main.get_items(limit=1)] == ["2"]


async def test_non_json_item_is_rejected_and_nothing_written() -> None:
    from eventstore import MemoryEventStore

    async with EventJournal(MemoryEventStore()) as journal:
        session = JournalSession("chat-5", journal)
        with pytest.raises(InvalidEvent):
            await session.add_items([{"role": "user", "content": b"raw"}])  # type: ignore[list-item]
        assert await journal.head("chat-5") == 0


def test_id_mapping_is_deterministic() -> None:
    from journal.integrations.openai_agents import journal_session_id

    assert journal_session_id("chat-1") == "chat-1"
    mapped = journal_session_id("user@example / chat")
    assert mapped == journal_session_id("user@example / chat")
    assert mapped.startswith("oa._") and mapped != journal_session_id("user@example / chat2")


async def test_instances_see_each_others_writes(store_factory: StoreFactory) -> None:
    async with EventJournal(store_factory()) as journal:
        a, b = JournalSession("chat-6", journal), JournalSession("chat-6", journal)
        await a.add_items([{"role": "user", "content": "1"}])
        assert await a.get_items(limit=1) == [{"role": "user", "content": "1"}]
        await b.add_items([{"role": "user", "content": "2"}])
        assert await a.get_items(limit=1) == [{"role": "user", "content": "2"}]
        assert await b.pop_item() == {"role": "user", "content": "2"}
        assert await a.get_items() == [{"role": "user", "content": "1"}]
        await a.add_items([{"role": "user", "content": "3"}])  # at a stale head: retried
        assert [i["content"] for i in await b.get_items()] == ["1", "3"]  # type: ignore[typeddict-item]


async def test_a_deleted_session_is_not_served_from_memory() -> None:
    from eventstore import MemoryEventStore

    async with EventJournal(MemoryEventStore()) as journal:
        session = JournalSession("chat-7", journal)
        await session.add_items([{"role": "user", "content": str(i)} for i in range(3)])
        assert len(await session.get_items()) == 3
        await journal.delete_session("chat-7")
        assert await session.get_items() == []
        await JournalSession("chat-7", journal).add_items([{"role": "user", "content": "new"}])
        assert await session.get_items() == [{"role": "user", "content": "new"}]
