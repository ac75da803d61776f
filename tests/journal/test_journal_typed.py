"""The journal's typed-event glue and its wait for other writers' feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType

import msgspec
import pytest

from eventstore import EventRecord, MemoryEventStore, Position
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


class _SlowListeningWatch:
    """A watch feed that needs a moment before it listens, like LISTEN on a new connection."""

    def __init__(self, store: _SlowListenStore) -> None:
        self._store = store

    async def __aenter__(self) -> AsyncIterator[Position]:
        await asyncio.sleep(0.05)
        self._store.listening.set()
        return self._positions()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _positions(self) -> AsyncIterator[Position]:
        while True:
            yield await self._store.feed.get()


class _SlowListenStore(MemoryEventStore):
    shared_writers = True

    def __init__(self) -> None:
        super().__init__()
        self.listening = asyncio.Event()
        self.feed: asyncio.Queue[Position] = asyncio.Queue()

    def watch(self) -> _SlowListeningWatch:  # type: ignore[override]
        return _SlowListeningWatch(self)


async def test_open_returns_only_once_the_store_listens() -> None:
    store = _SlowListenStore()
    async with EventJournal(store) as journal:
        # Writes by other processes right after open() are seen only if we already listen.
        assert store.listening.is_set()
        async with journal.subscribe("s") as live:
            # Another writer's event: stored behind the journal's back, announced by position.
            await store.append(EventRecord.new("s", "main", 1, "message", {"from": "elsewhere"}))
            store.feed.put_nowait(Position("s", "main", 1))
            event = await asyncio.wait_for(anext(aiter(live)), 5)
            assert event.data == {"from": "elsewhere"}


async def test_append_and_publish_is_append() -> None:
    async with EventJournal(MemoryEventStore()) as journal, journal.subscribe("s") as live:
        stored = await journal.append_and_publish(EventRecord.new("s", "main", 1, "k"))
        assert await anext(aiter(live)) == stored
