"""The checks of a record's fields: what every backend stores, and ``EventRecord.new`` checks.

Below the records (they need no record type), so :meth:`EventRecord.new` and
:func:`eventstore._validate.check_event` run the same code.
"""

from __future__ import annotations

from array import array
from datetime import datetime
from itertools import accumulate
from typing import Any, Protocol

from ._errors import InvalidEvent
from ._ids import _seen_valid, check_identifier
from ._json import decode as _decode
from ._json import encode as _encode

__all__ = ("MAX_DEPTH", "MAX_SEQUENCE", "RecordFields", "check_fields")

#: The largest sequence, bound or limit: PostgreSQL's ``bigint``, the same on every backend.
MAX_SEQUENCE = 2**63 - 1
#: Arrays and objects ``data`` (or ``metadata``) may nest. A fixed bound, so a payload
#: accepted here never meets the interpreter's recursion limit when it is encoded or
#: decoded later, however deep the caller's stack; a stored line stays within jq's 256.
MAX_DEPTH = 255

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
    if type(value) is dict:
        # A flat dict (str keys, plain values), the common payload, survives the
        # trip by construction: the decode and compare would cost twice the
        # encoding only to confirm it. Only the encoding can still fail (a lone
        # surrogate, an int beyond 64 bits): _round_trip says why.
        for key, item in value.items():
            if type(key) is not str or type(item) not in _PLAIN:
                return _round_trip(value, what)
        try:
            return _encode(value)
        except (TypeError, ValueError, OverflowError):
            return _round_trip(value, what)
    return _round_trip(value, what)


def _round_trip(value: Any, what: str) -> bytes:
    """:func:`_check_json` for any value: encoded, decoded and compared.

    :raises InvalidEvent: as :func:`_check_json`.
    """
    # msgspec encodes more than JSON (datetimes, sets, NaN as null...). A value is
    # storable only if it survives the trip unchanged, which rejects all of those
    # with two C-speed calls instead of a Python walk.
    try:
        encoded = _encode(value)
        same = _decode(encoded) == value
    except RecursionError:
        raise InvalidEvent(f"{what} nests deeper than {MAX_DEPTH} arrays and objects") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidEvent(f"{what} is not JSON-encodable: {exc}") from exc
    if not same:
        where = _bytes_at(value, what)
        if where is not None:
            raise InvalidEvent(
                f"{where} is bytes: payloads are JSON, so base64-encode binary values "
                "(base64.b64encode(value).decode()) and decode them after reading"
            )
        raise InvalidEvent(f"{what} does not round-trip through JSON: {value!r:.200}")
    # Each level needs an opening bracket: few brackets, shallow document.
    if encoded.count(b"[") + encoded.count(b"{") > MAX_DEPTH and _depth(encoded) > MAX_DEPTH:
        raise InvalidEvent(f"{what} nests deeper than {MAX_DEPTH} arrays and objects")
    return encoded


def _bytes_at(value: Any, path: str, depth: int = 0) -> str | None:
    """Where ``value`` holds ``bytes`` (or a bytearray, a memoryview), as ``data['a'][0]``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return path
    if depth > MAX_DEPTH:
        return None
    items: Any = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    for key, item in items:
        found = _bytes_at(item, f"{path}[{key!r}]", depth + 1)
        if found is not None:
            return found
    return None


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


class RecordFields(Protocol):
    """The fields :func:`check_fields` reads: an :class:`~eventstore.EventRecord`'s."""

    @property
    def session_id(self) -> str: ...
    @property
    def branch_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def data(self) -> Any: ...
    @property
    def metadata(self) -> dict[str, Any]: ...


def check_fields(event: RecordFields) -> tuple[bytes | None, bytes | None]:
    """Check a record's fields; return the JSON of ``data`` and ``metadata`` the check made.

    ``None`` for ``data`` when it is ``None``, for ``metadata`` when it is empty.

    :raises InvalidIdentifier: for a bad ``session_id`` or ``branch_id``.
    :raises InvalidEvent: as :func:`eventstore._validate.check_event` says.
    """
    # Fields read once into locals: this runs on every append of every backend.
    # (One statement each: a tuple assignment of eight builds and drops a tuple.)
    session_id = event.session_id
    branch_id = event.branch_id
    sequence = event.sequence
    kind = event.kind
    event_id = event.event_id
    recorded_at = event.recorded_at
    data = event.data
    metadata = event.metadata
    # check_identifier's cache of valid ids, read here: two calls per event saved.
    if type(session_id) is not str or session_id not in _seen_valid:
        check_identifier(session_id, "session_id")
    if type(branch_id) is not str or branch_id not in _seen_valid:
        check_identifier(branch_id, "branch_id")
    if type(sequence) is not int or not 1 <= sequence <= MAX_SEQUENCE:
        raise InvalidEvent(f"sequence must be an int in 1..2**63-1, got {sequence!r}")
    if type(kind) is not str or kind not in _seen_kinds:
        _check_kind(kind)
    if type(event_id) is not str or not event_id or len(event_id) > 128:
        raise InvalidEvent(f"event_id must be a string of 1-128 characters, got {event_id!r}")
    if not event_id.isascii() or "\x00" in event_id:
        _check_text(event_id, "event_id")
    if not isinstance(recorded_at, datetime) or recorded_at.tzinfo is None:
        raise InvalidEvent("recorded_at must be a timezone-aware datetime")
    if type(metadata) is not dict and not isinstance(metadata, dict):
        raise InvalidEvent(f"metadata must be a dict, got {type(metadata).__name__}")
    if data is None:
        data_json = None
    elif type(data) is dict:
        # _check_json's flat-dict case, inlined: the common payload of every append.
        for key, item in data.items():
            if type(key) is not str or type(item) not in _PLAIN:
                data_json = _round_trip(data, "data")
                break
        else:
            try:
                data_json = _encode(data)
            except (TypeError, ValueError, OverflowError):
                data_json = _round_trip(data, "data")  # raises, saying why
    else:
        data_json = _check_json(data, "data")
    if not metadata:
        return data_json, None
    metadata_json = _check_json(metadata, "metadata")
    # PostgreSQL reads metadata fields in SQL (the key lookup's index), and its
    # text cannot hold NUL: refused here, every backend refuses it alike. The
    # byte test is exact but for a literal backslash before "u0000": walk then.
    if b"\\u0000" in metadata_json:
        where = _nul_at(metadata, "metadata")
        if where is not None:
            raise InvalidEvent(
                f"{where} contains a NUL character: metadata strings and keys must not "
                "(data may hold them)"
            )
    return data_json, metadata_json


def _nul_at(value: Any, path: str, depth: int = 0) -> str | None:
    """Where in ``value`` a str (or a dict key) holds NUL, or ``None``."""
    if type(value) is str:
        return path if "\x00" in value else None
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"{path} key {key!r:.100}"
            found = _nul_at(item, f"{path}[{key!r:.100}]", depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{path}[{index}]", depth + 1)
            if found is not None:
                return found
    return None


#: Kinds already seen valid; a hit skips :func:`_check_kind`'s checks.
_seen_kinds: set[str] = set()
_KINDS_MAX = 4096


def _check_kind(kind: object) -> None:
    """Check a ``kind``; remember it once valid.

    :raises InvalidEvent: for a kind that is not a non-empty str, or holds NUL
        or a lone surrogate.
    """
    if type(kind) is not str or not kind:
        raise InvalidEvent(f"kind must be a non-empty string, got {kind!r}")
    _check_text(kind, "kind")
    if len(_seen_kinds) >= _KINDS_MAX:
        _seen_kinds.clear()
    _seen_kinds.add(kind)
