"""The journal's typed-event glue and its wait for other writers' feed."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from eventstore import EventRecord, MemoryEventStore
from journal import EventDecodeError, EventJournal, EventTypes, UnknownEventKind


class Message(msgspec.Struct, tag="message"):
    role: str
    text: str


class ToolCall(msgspec.Struct, tag="tool_call"):
    tool: str
    args: dict[str, object] = {}


class Unregistered(msgspec.Struct, tag="other"):
    x: int


async def test_record_typed_and_decode_round_trip() -> None:
    async with EventJournal(MemoryEventStore(), types=EventTypes(Message, ToolCall)) as journal:
        first = await journal.record_typed("s", Message("user", "hi"))
        second = await journal.record_typed("s", ToolCall("search", {"q": "x"}))
        assert (first.kind, first.data) == ("message", {"role": "user", "text": "hi"})
        assert (second.sequence, second.kind) == (2, "tool_call")
        assert [journal.decode(r) for r in await journal.read("s")] == [
            Message("user", "hi"),
            ToolCall("search", {"q": "x"}),
        ]


async def test_typed_errors_name_the_record() -> None:
    async with EventJournal(MemoryEventStore(), types=EventTypes(Message)) as journal:
        with pytest.raises(UnknownEventKind):
            await journal.record_typed("s", Unregistered(1))
        assert await journal.head("s") == 0
        await journal.record("s", "tool_call", {"tool": "x"})
        await journal.record("s", "message", {"role": 3})
        unknown, bad = await journal.read("s")
        with pytest.raises(UnknownEventKind, match="s/main#1"):
            journal.decode(unknown)
        with pytest.raises(EventDecodeError, match="s/main#2"):
            journal.decode(bad)


async def test_types_can_be_registered_later() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        journal.types.register(Message)
        stored = await journal.record_typed("s", Message("assistant", "ok"))
        assert journal.decode(stored) == Message("assistant", "ok")


class _SlowListenStore(MemoryEventStore):
    """A store that follows other processes and needs a moment to start, like LISTEN."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bool] = []
        self.ready = asyncio.Event()

    def _listening(self, on: bool) -> None:
        self.calls.append(on)

    async def listening(self) -> None:
        await asyncio.sleep(0.05)
        self.ready.set()

    def foreign_commit(self, record: EventRecord) -> None:
        """Another process's commit, as the store reports it to its listeners."""
        self._committed([record])


async def test_open_returns_only_once_the_store_listens() -> None:
    store = _SlowListenStore()
    journal = EventJournal(store)
    assert store.calls == [True]  # one listener, registered with the journal
    async with journal:
        # Writes by other processes right after open() are seen only if we already listen.
        assert store.ready.is_set()
        async with journal.subscribe("s") as live:
            record = await store.append(
                EventRecord.new("s", "main", 1, "message", {"from": "elsewhere"})
            )
            event = await asyncio.wait_for(anext(aiter(live)), 5)
            assert event == record
    assert store.calls == [True, False]


async def test_append_and_publish_is_append() -> None:
    async with EventJournal(MemoryEventStore()) as journal, journal.subscribe("s") as live:
        stored = await journal.append_and_publish(EventRecord.new("s", "main", 1, "k"))
        assert await anext(aiter(live)) == stored
