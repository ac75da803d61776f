"""The memory store's payload checks and copies, and its one event-id index per session.

Validation skips the decode for flat payloads, and one event-id index per
session answers for every branch. None of it may let through what the full
round trip refuses, or let a caller reach the stored copy.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from eventstore import (
    MAIN,
    EventRecord,
    InvalidEvent,
    MemoryEventStore,
    SequenceConflict,
    StoreClosed,
)
from eventstore._validate import check_event_json

FLAT = {"role": "assistant", "content": "done", "tokens": 42, "ok": True, "none": None}


def ev(
    seq: int, data: Any = FLAT, *, branch: str = MAIN, event_id: str | None = None
) -> EventRecord:
    return EventRecord("s1", branch, seq, "message", data, event_id=event_id or f"e{seq}")


class Colour(enum.Enum):
    RED = "red"


class Text(str):
    __slots__ = ()


@pytest.mark.parametrize(
    "data",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {1: "int key"},
        {"when": datetime(2024, 1, 1, tzinfo=UTC)},
        {"pair": (1, 2)},
        {"set": {1}},
        {"colour": Colour.RED},
        {"text": Text("subclass")},
        {"bad": "\ud800"},
        {"\ud800": "bad key"},
    ],
    ids=[
        "nan",
        "inf",
        "int-key",
        "datetime",
        "tuple",
        "set",
        "enum",
        "str-subclass",
        "surrogate",
        "surrogate-key",
    ],
)
async def test_flat_payloads_that_do_not_round_trip_are_refused(data: dict[Any, Any]) -> None:
    async with MemoryEventStore() as store:
        await store.append(ev(1))
        with pytest.raises(InvalidEvent):
            await store.append(ev(2, data))
        with pytest.raises(InvalidEvent):
            await store.append(ev(2, [data]))
        assert await store.head("s1") == 1


def test_check_event_json_returns_the_encodings() -> None:
    record = EventRecord("s1", MAIN, 1, "k", FLAT, {"trace": "t"})
    assert check_event_json(record) == (msgspec.json.encode(FLAT), b'{"trace":"t"}')
    assert check_event_json(EventRecord("s1", MAIN, 1, "k")) == (None, None)


async def test_flat_payload_is_a_private_copy() -> None:
    data = {"a": 1, "b": "x"}
    async with MemoryEventStore() as store:
        await store.append(ev(1))
        await store.append(ev(2, data))
        data["a"] = 2
        got = (await store.read("s1", from_sequence=2))[0]
        got.data["b"] = "mutated by reader"
        assert (await store.read("s1", from_sequence=2))[0].data == {"a": 1, "b": "x"}


async def test_an_event_id_stored_on_another_branch_is_refused() -> None:
    async with MemoryEventStore() as store:
        first = await store.append(ev(1))
        await store.create_branch("s1", "b")
        # The fast path (branch exists, sequence is head + 1) must see main's id.
        with pytest.raises(InvalidEvent, match=r"main#1\) with other content"):
            await store.append(ev(2, branch="b", event_id="e1"))
        assert await store.head("s1", "b") == 1
        assert await store.append(ev(5, event_id="e1")) == first
        await store.append(ev(2, branch="b"))
        with pytest.raises(SequenceConflict):
            await store.append(ev(2, branch="b", event_id="fresh"))
        assert [r.event_id for r in await store.read("s1", "b")] == ["e1", "e2"]


async def test_append_after_close_raises_store_closed() -> None:
    store = MemoryEventStore()
    await store.append(ev(1))
    await store.close()
    with pytest.raises(StoreClosed):
        await store.append(ev(2))
    with pytest.raises(InvalidEvent):
        await store.append(ev(2, {"x": float("nan")}))
