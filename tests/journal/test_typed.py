"""Typed events: a registry of tagged Structs over a plain store."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import EventRecord, EventStoreError, MemoryEventStore
from journal._typed import EventDecodeError, EventTypes, JournalError, UnknownEventKind


class Message(msgspec.Struct, tag="message"):
    role: str
    text: str


class ToolCall(msgspec.Struct, tag="tool_call", frozen=True):
    name: str
    arguments: dict[str, Any] = {}
    at: datetime | None = None


class Renamed(msgspec.Struct, tag="renamed", tag_field="event_type"):
    value: int


TYPES = EventTypes(Message, ToolCall, Renamed)


def test_kind_and_data_strips_the_tag() -> None:
    assert TYPES.kind_and_data(Message("user", "hi")) == (
        "message",
        {"role": "user", "text": "hi"},
    )
    assert TYPES.kind_and_data(Renamed(3)) == ("renamed", {"value": 3})


async def test_round_trip_through_a_store() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    events: list[msgspec.Struct] = [
        Message("user", "list files"),
        ToolCall("ls", {"path": "/tmp"}, at),
        Renamed(7),
    ]
    async with MemoryEventStore() as store:
        for sequence, event in enumerate(events, start=1):
            kind, data = TYPES.kind_and_data(event)
            await store.append(EventRecord.new("s1", "main", sequence, kind, data))
        records = await store.read("s1")
    assert [TYPES.decode(record) for record in records] == events


def test_a_hand_written_payload_decodes_the_same() -> None:
    assert TYPES.decode_data("tool_call", {"name": "ls"}) == ToolCall("ls")
    # The tag may be present as long as it agrees with the kind.
    assert TYPES.decode_data("message", {"type": "message", "role": "a", "text": "b"}) == Message(
        "a", "b"
    )


def test_unknown_kind_names_the_record() -> None:
    record = EventRecord.new("s1", "alt", 4, "mystery", {"x": 1})
    with pytest.raises(UnknownEventKind) as info:
        TYPES.decode(record)
    err = info.value
    assert (err.kind, err.session_id, err.branch_id, err.sequence) == ("mystery", "s1", "alt", 4)
    assert "s1/alt#4" in str(err)
    assert isinstance(err, JournalError)
    assert isinstance(err, EventStoreError)
    assert isinstance(err, LookupError)


@pytest.mark.parametrize(
    "data",
    [{"role": "user"}, {"role": 1, "text": "x"}, ["user", "x"], None, {"type": "tool_call"}],
)
def test_a_mismatched_payload_is_a_decode_error(data: Any) -> None:
    record = EventRecord.new("s2", "main", 9, "message", data)
    with pytest.raises(EventDecodeError) as info:
        TYPES.decode(record)
    err = info.value
    assert (err.kind, err.session_id, err.branch_id, err.sequence) == ("message", "s2", "main", 9)
    assert "s2/main#9" in str(err)
    assert isinstance(err, ValueError)
    assert isinstance(err, JournalError)


def test_errors_pickle_with_their_fields() -> None:
    for err in (
        UnknownEventKind("k", "s", "b", 3),
        EventDecodeError("k", "bad", "s", "b", 3),
        UnknownEventKind("k"),
    ):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert str(copy) == str(err)
        assert copy.__dict__ == err.__dict__


def test_unregistered_types_are_unknown_kinds() -> None:
    class Other(msgspec.Struct, tag="other"):
        pass

    class Plain(msgspec.Struct):
        x: int

    with pytest.raises(UnknownEventKind, match="'other'"):
        TYPES.kind_and_data(Other())
    with pytest.raises(UnknownEventKind, match="Plain"):
        TYPES.kind_and_data(Plain(1))
    with pytest.raises(UnknownEventKind):
        TYPES.type_for("other")


def test_registration_rejects_what_cannot_be_a_kind() -> None:
    class Untagged(msgspec.Struct):
        x: int

    class IntTag(msgspec.Struct, tag=5):
        x: int

    class Array(msgspec.Struct, tag="array", array_like=True):
        x: int

    class Clash(msgspec.Struct, tag="message"):
        x: int

    for bad in (Untagged, IntTag, Array, dict):
        with pytest.raises(TypeError):
            EventTypes(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'message'"):
        EventTypes(Message, Clash)


def test_registry_introspection() -> None:
    assert TYPES.kinds == ("message", "tool_call", "renamed")
    assert "tool_call" in TYPES
    assert "nope" not in TYPES
    assert list(TYPES) == [Message, ToolCall, Renamed]
    assert len(TYPES) == 3
    assert TYPES.type_for("message") is Message
    assert repr(TYPES) == "EventTypes(Message, ToolCall, Renamed)"
    # Registering the same type twice is harmless.
    assert EventTypes(Message, Message).kinds == ("message",)


@given(
    role=st.text(),
    text=st.text(),
    arguments=st.dictionaries(st.text(), st.integers() | st.text() | st.booleans()),
)
def test_kind_and_data_round_trips(role: str, text: str, arguments: dict[str, Any]) -> None:
    for event in (Message(role, text), ToolCall(role, arguments)):
        kind, data = TYPES.kind_and_data(event)
        stored = msgspec.json.decode(msgspec.json.encode(data))
        assert TYPES.decode_data(kind, stored) == event


def test_register_as_a_decorator() -> None:
    types = EventTypes(Message)

    @types.register
    class Note(msgspec.Struct, tag="note"):
        text: str

    assert types.kinds == ("message", "note")
    assert types.decode_data("note", {"text": "x"}) == Note("x")
    with pytest.raises(ValueError, match="'note'"):

        @types.register
        class Other(msgspec.Struct, tag="note"):
            pass
