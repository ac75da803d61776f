"""Input checks shared by every backend, all of them before any I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import NamedTuple

import msgspec

from ._errors import InvalidEvent
from ._fields import MAX_DEPTH, MAX_SEQUENCE, check_fields
from ._ids import check_identifier
from ._records import EventRecord

__all__ = (
    "MAX_DEPTH",
    "MAX_SEQUENCE",
    "check_batch",
    "check_event",
    "check_event_id_arg",
    "check_key_arg",
    "check_kinds",
    "check_sequences",
    "check_next_batch",
    "check_event_json",
    "check_feed_args",
    "check_idle_for",
    "check_range",
    "check_sequence_arg",
    "check_sessions_query",
    "SessionQuery",
)


_event_id = attrgetter("event_id")


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
    if type(event) is not EventRecord and not isinstance(event, EventRecord):
        raise InvalidEvent(f"expected an EventRecord, got {type(event).__name__}")
    return check_fields(event)


def check_batch(events: Sequence[EventRecord]) -> list[EventRecord]:
    """Validate a batch: one session and branch, contiguous sequences.

    :raises InvalidEvent: for an empty or mixed batch, or a gap inside it.
    :raises InvalidIdentifier: for a bad id.
    """
    batch = list(events)
    if not batch:
        raise InvalidEvent("append_batch needs at least one event")
    first = check_event(batch[0])
    session_id, branch_id, expected = first.session_id, first.branch_id, first.sequence
    # check_event inlined (one call per record, not three), the same checks in
    # the same order: each record in full, then against the first.
    for event in batch[1:]:
        if type(event) is not EventRecord and not isinstance(event, EventRecord):
            raise InvalidEvent(f"expected an EventRecord, got {type(event).__name__}")
        check_fields(event)
        expected += 1
        if event.session_id != session_id or event.branch_id != branch_id:
            raise InvalidEvent("a batch must hold events of one session and branch")
        if event.sequence != expected:
            raise InvalidEvent(
                f"batch sequences must be contiguous: expected {expected}, got {event.sequence}"
            )
    if len(set(map(_event_id, batch))) != len(batch):
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


def _check_moment(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime or None, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value


class SessionQuery(NamedTuple):
    """The validated arguments of :meth:`EventStore.sessions`, as its backends get them."""

    prefix: str | None
    active_after: datetime | None
    active_before: datetime | None
    limit: int | None
    after: str | None

    def active(self, moment: datetime) -> bool:
        """Whether a last activity at ``moment`` is within the query's bounds."""
        return (self.active_after is None or moment >= self.active_after) and (
            self.active_before is None or moment < self.active_before
        )


def check_sessions_query(
    prefix: object, active_after: object, active_before: object, limit: object, after: object
) -> SessionQuery:
    """Validate the arguments of :meth:`EventStore.sessions`.

    :raises TypeError: for a ``prefix`` that is not a string, or a bound that is not a
        datetime.
    :raises ValueError: for a naive datetime, a limit outside ``0..MAX_SEQUENCE``, or
        a ``prefix`` longer than an identifier.
    :raises InvalidIdentifier: for a bad ``after``.
    """
    if prefix is not None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, got {type(prefix).__name__}")
        if len(prefix) > 128:
            raise ValueError("prefix must not be longer than an identifier (128 characters)")
    cap = None if limit is None else check_sequence_arg(limit, "limit", 0)
    start = None if after is None else check_identifier(after, "after")
    return SessionQuery(
        prefix or None,
        _check_moment(active_after, "active_after"),
        _check_moment(active_before, "active_before"),
        cap,
        start,
    )


def check_idle_for(value: object) -> timedelta:
    """Return a non-negative ``idle_for``.

    :raises TypeError: if it is not a :class:`~datetime.timedelta`.
    :raises ValueError: if it is negative.
    """
    if not isinstance(value, timedelta):
        raise TypeError(f"idle_for must be a timedelta, got {type(value).__name__}")
    if value < timedelta(0):
        raise ValueError(f"idle_for must not be negative, got {value!r}")
    return value


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


def check_kinds(kinds: object) -> frozenset[str] | None:
    """Validate a ``kinds`` filter: ``None`` (every kind) or an iterable of str.

    :raises TypeError: for anything else (a bare str is refused).
    """
    return _names(kinds, "kinds", False)


def check_event_id_arg(value: object) -> str:
    """Return an event id to look up: a str of 1-128 characters without NUL.

    :raises TypeError: if it is not a str.
    :raises ValueError: if it could never be stored (empty, too long, NUL).
    """
    if type(value) is not str:
        raise TypeError(f"event_id must be a str, got {type(value).__name__}")
    if not value or len(value) > 128 or "\x00" in value:
        raise ValueError(f"event_id must be a string of 1-128 characters, got {value!r:.200}")
    return value


def check_key_arg(value: object) -> str:
    """Return a ``metadata["key"]`` to look up: a non-empty str without NUL or lone surrogate.

    :raises TypeError: if it is not a str.
    :raises ValueError: if it is empty or holds NUL or a lone surrogate.
    """
    if type(value) is not str:
        raise TypeError(f"key must be a str, got {type(value).__name__}")
    if not value or "\x00" in value:
        raise ValueError(f"key must be a non-empty string without NUL, got {value!r:.200}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"key is not valid Unicode: {value!r:.200}") from None
    return value


def check_sequences(sequences: object) -> list[int]:
    """Validate the sequences of :meth:`~eventstore.EventStore.read_at`.

    :raises TypeError: if ``sequences`` is not an iterable (a str or bytes is refused).
    :raises ValueError: for an item that is not an int in ``0..MAX_SEQUENCE``.
    """
    if isinstance(sequences, str | bytes) or not hasattr(sequences, "__iter__"):
        raise TypeError(f"sequences must be an iterable of int, got {type(sequences).__name__}")
    return [check_sequence_arg(s, "sequence", 0) for s in sequences]
