"""Input checks shared by every backend, all of them before any I/O."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from datetime import datetime
from itertools import accumulate
from typing import Any

import msgspec

from ._errors import InvalidEvent
from ._ids import _seen_valid, check_identifier
from ._records import EventRecord

__all__ = (
    "MAX_DEPTH",
    "MAX_SEQUENCE",
    "check_batch",
    "check_event",
    "check_next_batch",
    "check_event_json",
    "check_range",
    "check_sequence_arg",
)

#: The largest sequence, bound or limit: PostgreSQL's ``bigint``, the same on every backend.
MAX_SEQUENCE = 2**63 - 1
#: Arrays and objects ``data`` (or ``metadata``) may nest. A fixed bound, so a payload
#: accepted here never meets the interpreter's recursion limit when it is encoded or
#: decoded later, however deep the caller's stack; a stored line stays within jq's 256.
MAX_DEPTH = 255

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# As signed bytes: an opening bracket counts +1, a closing one -1.
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _depth(encoded: bytes) -> int:
    """How deep the arrays and objects of a JSON document nest, at C speed."""
    # Without its escapes (a backslash always starts one, left to right), every
    # quote delimits a string; the even pieces are what lies outside strings.
    bare = encoded.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(bare.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKET).translate(_STEP)
    return max(accumulate(array("b", brackets)), default=0)


#: Exact types whose JSON decodes to an equal value, whatever the value: ``float``
#: is missing because NaN and the infinities encode as ``null``.
_PLAIN = frozenset({str, int, bool, type(None)})


def _check_json(value: Any, what: str) -> bytes:
    """The JSON of ``value``, made while checking it is storable as it is.

    :raises InvalidEvent: if it is not plain JSON or nests deeper than :data:`MAX_DEPTH`.
    """
    # msgspec encodes more than JSON (datetimes, sets, NaN as null...). A value is
    # storable only if it survives the trip unchanged, which rejects all of those
    # with two C-speed calls instead of a Python walk.
    try:
        encoded = _encode(value)
        if type(value) is dict:
            # A flat dict (str keys, plain values), the common payload, survives the
            # trip by construction: the decode and compare would cost twice the
            # encoding only to confirm it.
            for key, item in value.items():
                if type(key) is not str or type(item) not in _PLAIN:
                    break
            else:
                return encoded
        same = _decode(encoded) == value
    except RecursionError:
        raise InvalidEvent(f"{what} nests deeper than {MAX_DEPTH} arrays and objects") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidEvent(f"{what} is not JSON-encodable: {exc}") from exc
    if not same:
        raise InvalidEvent(f"{what} does not round-trip through JSON: {value!r:.200}")
    # Each level needs an opening bracket: few brackets, shallow document.
    if encoded.count(b"[") + encoded.count(b"{") > MAX_DEPTH and _depth(encoded) > MAX_DEPTH:
        raise InvalidEvent(f"{what} nests deeper than {MAX_DEPTH} arrays and objects")
    return encoded


def _check_text(value: str, what: str) -> None:
    # PostgreSQL's text type refuses NUL, and no encoder takes a lone surrogate:
    # refused here, every backend refuses them alike.
    if "\x00" in value:
        raise InvalidEvent(f"{what} must not contain NUL characters: {value!r:.200}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise InvalidEvent(
                f"{what} is not valid Unicode ({exc.reason} at {exc.start}): {value!r:.200}"
            ) from None


def check_event(event: object) -> EventRecord:
    """Return ``event`` if it can be stored as it is.

    :raises InvalidIdentifier: for a bad ``session_id`` or ``branch_id``.
    :raises InvalidEvent: for anything else wrong with it: a sequence outside
        ``1..MAX_SEQUENCE``, an empty ``kind``, an ``event_id`` not of 1-128
        characters, NUL or a lone surrogate in either, a naive ``recorded_at``, or
        ``data``/``metadata`` that is not plain JSON or nests deeper than
        :data:`MAX_DEPTH`.
    """
    check_event_json(event)
    return event  # type: ignore[return-value]


def check_event_json(event: object) -> tuple[bytes | None, bytes | None]:
    """Check ``event`` as :func:`check_event` does; return the JSON the check made.

    The JSON of ``data`` (``None`` when ``data`` is) and of ``metadata`` (``None``
    when it is empty), so a store that keeps encoded payloads encodes them once.

    :raises InvalidIdentifier, InvalidEvent: as :func:`check_event`.
    """
    # Fields read once into locals: this runs on every append of every backend.
    if type(event) is not EventRecord and not isinstance(event, EventRecord):
        raise InvalidEvent(f"expected an EventRecord, got {type(event).__name__}")
    session_id, branch_id, sequence, kind, event_id = (
        event.session_id,
        event.branch_id,
        event.sequence,
        event.kind,
        event.event_id,
    )
    # check_identifier's cache of valid ids, read here: two calls per event saved.
    if type(session_id) is not str or session_id not in _seen_valid:
        check_identifier(session_id, "session_id")
    if type(branch_id) is not str or branch_id not in _seen_valid:
        check_identifier(branch_id, "branch_id")
    if type(sequence) is not int or not 1 <= sequence <= MAX_SEQUENCE:
        raise InvalidEvent(f"sequence must be an int in 1..2**63-1, got {sequence!r}")
    if type(kind) is not str or not kind:
        raise InvalidEvent(f"kind must be a non-empty string, got {kind!r}")
    if not kind.isascii() or "\x00" in kind:
        _check_text(kind, "kind")
    if type(event_id) is not str or not event_id or len(event_id) > 128:
        raise InvalidEvent(f"event_id must be a string of 1-128 characters, got {event_id!r}")
    if not event_id.isascii() or "\x00" in event_id:
        _check_text(event_id, "event_id")
    recorded_at, data, metadata = event.recorded_at, event.data, event.metadata
    if not isinstance(recorded_at, datetime) or recorded_at.tzinfo is None:
        raise InvalidEvent("recorded_at must be a timezone-aware datetime")
    if type(metadata) is not dict and not isinstance(metadata, dict):
        raise InvalidEvent(f"metadata must be a dict, got {type(metadata).__name__}")
    return (
        None if data is None else _check_json(data, "data"),
        _check_json(metadata, "metadata") if metadata else None,
    )


def check_batch(events: Sequence[EventRecord]) -> list[EventRecord]:
    """Validate a batch: one session and branch, contiguous sequences.

    :raises InvalidEvent: for an empty or mixed batch, or a gap inside it.
    :raises InvalidIdentifier: for a bad id.
    """
    batch = list(events)
    if not batch:
        raise InvalidEvent("append_batch needs at least one event")
    first = check_event(batch[0])
    for offset, event in enumerate(batch[1:], start=1):
        check_event(event)
        if event.session_id != first.session_id or event.branch_id != first.branch_id:
            raise InvalidEvent("a batch must hold events of one session and branch")
        if event.sequence != first.sequence + offset:
            raise InvalidEvent(
                f"batch sequences must be contiguous: expected {first.sequence + offset}, "
                f"got {event.sequence}"
            )
    ids = {event.event_id for event in batch}
    if len(ids) != len(batch):
        raise InvalidEvent("a batch must not repeat an event_id")
    return batch


def check_next_batch(events: Sequence[EventRecord]) -> list[EventRecord]:
    """Validate an :meth:`~eventstore.EventStore.append_next` batch, sequences ignored.

    Returns the events numbered ``1..n`` (the store renumbers them from its head).

    :raises InvalidEvent: for an empty or mixed batch, a repeated event id, or
        anything :func:`check_event` refuses (but the sequence).
    :raises InvalidIdentifier: for a bad id.
    """
    batch = list(events)
    for event in batch:
        if not isinstance(event, EventRecord):
            raise InvalidEvent(f"expected an EventRecord, got {type(event).__name__}")
    replace = msgspec.structs.replace
    return check_batch(
        [
            event if event.sequence == n else replace(event, sequence=n)
            for n, event in enumerate(batch, 1)
        ]
    )


def check_sequence_arg(value: object, name: str, minimum: int = 0) -> int:
    """Return an int argument in ``minimum..MAX_SEQUENCE``.

    :raises ValueError: (not :class:`InvalidEvent`) otherwise.
    """
    if type(value) is not int or not minimum <= value <= MAX_SEQUENCE:
        raise ValueError(f"{name} must be an int in {minimum}..2**63-1, got {value!r}")
    return value


def check_range(
    from_sequence: object, to_sequence: object, limit: object
) -> tuple[int, int | None, int | None]:
    """Validate read arguments.

    :raises ValueError: for a non-int bound or limit, or one outside ``0..MAX_SEQUENCE``.
    """
    start = check_sequence_arg(from_sequence, "from_sequence", 0)
    end = None if to_sequence is None else check_sequence_arg(to_sequence, "to_sequence", 0)
    cap = None if limit is None else check_sequence_arg(limit, "limit", 0)
    return max(start, 1), end, cap


def check_feed_args(
    after: object, limit: object, kinds: object, session_ids: object
) -> tuple[int, int | None, frozenset[str] | None, frozenset[str] | None]:
    """Validate :meth:`~eventstore.EventStore.read_feed` arguments, before any I/O.

    :raises ValueError: for a non-int or negative ``after`` or ``limit``.
    :raises TypeError: for ``kinds``/``session_ids`` that are not an iterable of
        str (a bare str is refused: it would filter by its characters).
    :raises InvalidIdentifier: for a bad id in ``session_ids``.
    """
    start = check_sequence_arg(after, "after", 0)
    cap = None if limit is None else check_sequence_arg(limit, "limit", 0)
    return start, cap, _names(kinds, "kinds", False), _names(session_ids, "session_ids", True)


def _names(value: object, field: str, ids: bool) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise TypeError(f"{field} must be an iterable of str, got {type(value).__name__}")
    names = frozenset(value)
    for name in names:
        if type(name) is not str:
            raise TypeError(f"{field} must hold str, got {type(name).__name__}")
        if ids:
            check_identifier(name, "session_id")
    return names
