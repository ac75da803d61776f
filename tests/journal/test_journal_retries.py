"""``record(..., event_id=...)`` is safe to retry after any failure (issue 11, D6).

The failure that matters is the one that looks like nothing happened: the write
committed, then the reply was lost, so the caller saw a ``StorageError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest

from eventstore import EventRecord, EventStore, InvalidEvent, StorageError, new_ulid
from journal import EventJournal
from tests.stream._helpers import take

StoreFactory = Callable[[], EventStore]


@pytest.fixture
async def journal(store_factory: StoreFactory) -> AsyncIterator[EventJournal]:
    async with EventJournal(store_factory()) as opened:
        yield opened


def lose_replies(store: EventStore, monkeypatch: pytest.MonkeyPatch, name: str, error: Any) -> None:
    """Make ``store.<name>`` do its work, then fail as if the reply was lost."""
    original: Callable[..., Awaitable[Any]] = getattr(store, name)

    async def committed_then_lost(*args: Any) -> Any:
        await original(*args)
        monkeypatch.undo()
        raise error

    monkeypatch.setattr(store, name, committed_then_lost)


async def test_record_twice_with_one_event_id_stores_once(journal: EventJournal) -> None:
    event_id = new_ulid()
    first = await journal.record("s", "message", {"text": "hi"}, event_id=event_id)
    again = await journal.record("s", "message", {"text": "hi"}, event_id=event_id)
    assert again == first
    assert first.event_id == event_id
    assert await journal.read("s") == [first]


async def test_retry_after_a_lost_reply_returns_the_stored_record(
    journal: EventJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal.record("s", "message", {"n": 0})
    lose_replies(journal.store, monkeypatch, "_append_next", StorageError("reply lost"))
    event_id = new_ulid()
    async with journal.subscribe("s", after_sequence=1) as live:
        with pytest.raises(StorageError):
            await journal.record("s", "message", {"n": 1}, event_id=event_id)
        # The event was stored all the same, and the store published its commit;
        # the retry finds it, writes and publishes nothing.
        stored = await journal.record("s", "message", {"n": 1}, event_id=event_id)
        assert (stored.sequence, stored.event_id, stored.data) == (2, event_id, {"n": 1})
        assert await take(live, 1) == [stored]
    assert await journal.head("s") == 2
    assert [r.event_id for r in await journal.read("s")][1:] == [event_id]


async def test_retry_with_other_content_is_invalid(journal: EventJournal) -> None:
    event_id = new_ulid()
    first = await journal.record("s", "message", {"n": 1}, event_id=event_id)
    with pytest.raises(InvalidEvent, match=event_id):
        await journal.record("s", "message", {"n": 2}, event_id=event_id)
    with pytest.raises(InvalidEvent, match=event_id):
        await journal.record("s", "note", {"n": 1}, event_id=event_id)
    assert await journal.read("s") == [first]


async def test_record_typed_passes_the_event_id(journal: EventJournal) -> None:
    class Said(msgspec.Struct, tag="said"):
        text: str

    journal.types.register(Said)
    event_id = new_ulid()
    first = await journal.record_typed("s", Said("hi"), event_id=event_id)
    assert first.event_id == event_id
    assert await journal.record_typed("s", Said("hi"), event_id=event_id) == first
    assert await journal.head("s") == 1


@pytest.mark.parametrize("store_factory", ["postgres"], indirect=True)
async def test_postgres_commit_then_lost_connection(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncpg

    lost = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    async with EventJournal(store_factory()) as journal, store_factory() as elsewhere:
        lose_replies(journal.store, monkeypatch, "_insert", lost)
        event_id = new_ulid()
        with pytest.raises(StorageError, match="ConnectionDoesNotExist"):
            await journal.record("s", "message", {"n": 1}, event_id=event_id)
        # Committed: another store sees it.
        committed = await elsewhere.read("s")
        assert [r.event_id for r in committed] == [event_id]
        again = await journal.record("s", "message", {"n": 1}, event_id=event_id)
        assert again == committed[0]
        assert await elsewhere.head("s") == 1
        assert await elsewhere.read("s") == committed


async def test_retried_batch_returns_the_stored_records(
    journal: EventJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = [EventRecord.new("s", "main", n, "message", {"n": n}) for n in (1, 2)]
    lose_replies(journal.store, monkeypatch, "_append_batch", StorageError("reply lost"))
    with pytest.raises(StorageError):
        await journal.append_batch(batch)
    assert await journal.append_batch(batch) == await journal.read("s")
    assert await journal.head("s") == 2
