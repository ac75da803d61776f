"""The record-typed JSON decoders: one reused decoder per type (msgspec's advice).

The untyped encoder and decoder are in :mod:`eventstore._json`; a stored line
is written by :func:`eventstore.file._batch.encode_batch`.
"""

from __future__ import annotations

import msgspec

from ._records import EventRecord

__all__ = ("decode_line", "decode_record", "decode_records")

_record_decoder = msgspec.json.Decoder(EventRecord)

#: ``decode_record(bytes) -> EventRecord``; raises ``msgspec.DecodeError``.
decode_record = _record_decoder.decode
#: ``decode_records(bytes) -> list[EventRecord]`` from newline-delimited JSON.
decode_records = _record_decoder.decode_lines


def decode_line(line: bytes) -> EventRecord | None:
    """The record on a complete line; ``None`` if it is torn (no newline) or not a record."""
    if not line.endswith(b"\n"):
        return None
    try:
        return decode_record(line)
    except msgspec.DecodeError:
        return None
