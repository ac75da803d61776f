"""Typed events: msgspec Structs in, ``(kind, data)`` out, and back again.

A journal stores ``kind`` and a plain JSON ``data`` payload. Applications would
rather work with types, so they declare one tagged :class:`msgspec.Struct` per
kind and list them in an :class:`EventTypes` registry::

    class Message(msgspec.Struct, tag="message"):
        role: str
        text: str

    class ToolCall(msgspec.Struct, tag="tool_call"):
        name: str
        arguments: dict[str, Any] = {}

    types = EventTypes(Message, ToolCall)
    kind, data = types.kind_and_data(ToolCall("ls", {"path": "/"}))
    # ("tool_call", {"name": "ls", "arguments": {"path": "/"}})
    event = types.decode(record)  # -> ToolCall(name='ls', ...)

The tag is the kind; it is not repeated inside ``data``, so a payload written by
hand as a plain dict decodes the same way. Schema evolution follows the records'
rules: a new field gets a default, a tag never changes, a field never changes type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec

from eventstore import EventRecord, EventStoreError

__all__ = ("EventDecodeError", "EventTypes", "JournalError", "UnknownEventKind")

_S = TypeVar("_S", bound=type[msgspec.Struct])


class JournalError(EventStoreError):
    """Base class of the errors the journal layer adds on top of the store's."""


def _where(session_id: str | None, branch_id: str | None, sequence: int | None) -> str:
    if session_id is None:
        return ""
    return f" at {session_id}/{branch_id}#{sequence}"


class UnknownEventKind(JournalError, LookupError):
    """No registered type has this kind (or an object's type is not registered).

    ``session_id``, ``branch_id`` and ``sequence`` name the record when there was one.
    """

    def __init__(
        self,
        kind: str,
        session_id: str | None = None,
        branch_id: str | None = None,
        sequence: int | None = None,
    ) -> None:
        self.kind = kind
        self.session_id = session_id
        self.branch_id = branch_id
        self.sequence = sequence
        super().__init__(f"unknown event kind {kind!r}{_where(session_id, branch_id, sequence)}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.kind, self.session_id, self.branch_id, self.sequence))


class EventDecodeError(JournalError, ValueError):
    """A record's ``data`` does not match the type registered for its kind."""

    def __init__(
        self,
        kind: str,
        reason: str,
        session_id: str | None = None,
        branch_id: str | None = None,
        sequence: int | None = None,
    ) -> None:
        self.kind = kind
        self.reason = reason
        self.session_id = session_id
        self.branch_id = branch_id
        self.sequence = sequence
        super().__init__(
            f"cannot decode {kind!r} event{_where(session_id, branch_id, sequence)}: {reason}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.kind, self.reason, self.session_id, self.branch_id, self.sequence),
        )


def _tag_of(cls: type[msgspec.Struct]) -> tuple[str, str]:
    config = cls.__struct_config__
    if config.tag is None or config.tag_field is None:
        raise TypeError(f"{cls.__qualname__} needs a tag: class {cls.__name__}(Struct, tag=...)")
    if not isinstance(config.tag, str):
        raise TypeError(f"{cls.__qualname__}: the tag is the event kind and must be a str")
    if config.array_like:
        raise TypeError(f"{cls.__qualname__}: array_like structs cannot carry a dict payload")
    return config.tag, config.tag_field


class EventTypes:
    """A registry of tagged Struct types, one per event kind.

    :param types: tagged, non-``array_like`` :class:`msgspec.Struct` subclasses
        with distinct string tags.
    :raises TypeError: for a type that is not such a Struct.
    :raises ValueError: if two types share a tag.
    """

    __slots__ = ("_by_kind", "_by_type")

    def __init__(self, *types: type[msgspec.Struct]) -> None:
        self._by_kind: dict[str, type[msgspec.Struct]] = {}
        self._by_type: dict[type[msgspec.Struct], tuple[str, str]] = {}
        for cls in types:
            self._register(cls)

    def register(self, cls: _S) -> _S:
        """Add a type; returns it, so it works as a class decorator::

            types = EventTypes()

            @types.register
            class Message(msgspec.Struct, tag="message"):
                text: str

        :raises TypeError: if ``cls`` is not a tagged, non-``array_like`` Struct.
        :raises ValueError: if another registered type has the same tag.
        """
        self._register(cls)
        return cls

    def _register(self, cls: type[msgspec.Struct]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
            raise TypeError(f"expected a msgspec.Struct subclass, got {cls!r}")
        kind, tag_field = _tag_of(cls)
        other = self._by_kind.get(kind)
        if other is not None and other is not cls:
            raise ValueError(
                f"kind {kind!r} is claimed by both {other.__qualname__} and {cls.__qualname__}"
            )
        self._by_kind[kind] = cls
        self._by_type[cls] = (kind, tag_field)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The registered kinds, in registration order."""
        return tuple(self._by_kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def __iter__(self) -> Iterator[type[msgspec.Struct]]:
        return iter(self._by_kind.values())

    def __len__(self) -> int:
        return len(self._by_kind)

    def __repr__(self) -> str:
        names = ", ".join(cls.__qualname__ for cls in self._by_kind.values())
        return f"EventTypes({names})"

    def type_for(self, kind: str) -> type[msgspec.Struct]:
        """The type registered for ``kind``.

        :raises UnknownEventKind: if none is.
        """
        try:
            return self._by_kind[kind]
        except KeyError:
            raise UnknownEventKind(kind) from None

    def kind_and_data(self, event: msgspec.Struct) -> tuple[str, Any]:
        """Split a typed event into the ``kind`` and the JSON ``data`` a journal stores.

        :raises UnknownEventKind: if the event's type is not registered.
        """
        entry = self._by_type.get(type(event))
        if entry is None:
            config = getattr(type(event), "__struct_config__", None)
            tag = getattr(config, "tag", None)
            raise UnknownEventKind(tag if isinstance(tag, str) else type(event).__qualname__)
        kind, tag_field = entry
        data = msgspec.to_builtins(event)
        del data[tag_field]
        return kind, data

    def decode_data(self, kind: str, data: Any) -> msgspec.Struct:
        """Build the typed event for a ``kind`` and its stored ``data``.

        :raises UnknownEventKind: if no type is registered for ``kind``.
        :raises EventDecodeError: if ``data`` does not match that type.
        """
        return self._decode(kind, data, None, None, None)

    def decode(self, record: EventRecord) -> msgspec.Struct:
        """The typed event stored in ``record``.

        :raises UnknownEventKind: if no type is registered for ``record.kind``;
            the error names the record's session, branch and sequence.
        :raises EventDecodeError: if ``record.data`` does not match the type,
            naming the record the same way.
        """
        return self._decode(
            record.kind, record.data, record.session_id, record.branch_id, record.sequence
        )

    def _decode(
        self,
        kind: str,
        data: Any,
        session_id: str | None,
        branch_id: str | None,
        sequence: int | None,
    ) -> msgspec.Struct:
        cls = self._by_kind.get(kind)
        if cls is None:
            raise UnknownEventKind(kind, session_id, branch_id, sequence)
        if not isinstance(data, dict):
            reason = f"expected an object payload, got {type(data).__name__}"
            raise EventDecodeError(kind, reason, session_id, branch_id, sequence)
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise EventDecodeError(kind, str(exc), session_id, branch_id, sequence) from exc
