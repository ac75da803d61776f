"""Input checks shared by every backend, all of them before any I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from ._errors import InvalidEvent
from ._ids import check_identifier
from ._records import EventRecord

__all__ = ("check_batch", "check_event", "check_range", "check_sequence_arg")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _check_json(value: Any, what: str) -> None:
    # msgspec encodes more than JSON (datetimes, sets, NaN as null...). A value is
    # storable only if it survives the trip unchanged, which rejects all of those
    # with two C-speed calls instead of a Python walk.
    try:
        same = _decode(_encode(value)) == value
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidEvent(f"{what} is not JSON-encodable: {exc}") from exc
    if not same:
        raise InvalidEvent(f"{what} does not round-trip through JSON: {value!r:.200}")


def check_event(event: object) -> EventRecord:
    """Return ``event`` if it can be stored as it is.

    :raises InvalidIdentifier: for a bad ``session_id`` or ``branch_id``.
    :raises InvalidEvent: for anything else wrong with it.
    """
    if not isinstance(event, EventRecord):
        raise InvalidEvent(f"expected an EventRecord, got {type(event).__name__}")
    check_identifier(event.session_id, "session_id")
    check_identifier(event.branch_id, "branch_id")
    if type(event.sequence) is not int or event.sequence < 1:
        raise InvalidEvent(f"sequence must be an int >= 1, got {event.sequence!r}")
    if type(event.kind) is not str or not event.kind:
        raise InvalidEvent(f"kind must be a non-empty string, got {event.kind!r}")
    if type(event.event_id) is not str or not event.event_id or len(event.event_id) > 128:
        raise InvalidEvent(f"event_id must be a string of 1-128 characters, got {event.event_id!r}")
    if not isinstance(event.recorded_at, datetime) or event.recorded_at.tzinfo is None:
        raise InvalidEvent("recorded_at must be a timezone-aware datetime")
    if not isinstance(event.metadata, dict):
        raise InvalidEvent(f"metadata must be a dict, got {type(event.metadata).__name__}")
    if event.data is not None:
        _check_json(event.data, "data")
    if event.metadata:
        _check_json(event.metadata, "metadata")
    return event


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


def check_sequence_arg(value: object, name: str, minimum: int = 0) -> int:
    """Return an int argument, or raise :class:`InvalidEvent`-free ``ValueError``."""
    if type(value) is not int or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_range(
    from_sequence: object, to_sequence: object, limit: object
) -> tuple[int, int | None, int | None]:
    """Validate read arguments.

    :raises ValueError: for a non-int or negative bound or limit.
    """
    start = check_sequence_arg(from_sequence, "from_sequence", 0)
    end = None if to_sequence is None else check_sequence_arg(to_sequence, "to_sequence", 0)
    cap = None if limit is None else check_sequence_arg(limit, "limit", 0)
    return max(start, 1), end, cap
