"""JSON codec for records: one reused encoder and decoder per type (msgspec's advice)."""

from __future__ import annotations

import msgspec

from ._records import BranchInfo, EventRecord

__all__ = (
    "decode_branches",
    "decode_line",
    "decode_record",
    "decode_records",
    "encode",
    "encode_line",
)

_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(EventRecord)
_branches_decoder = msgspec.json.Decoder(list[BranchInfo])

#: ``encode(obj) -> bytes``: compact JSON of a record, a list, any struct.
encode = _encoder.encode
#: ``decode_record(bytes) -> EventRecord``; raises ``msgspec.DecodeError``.
decode_record = _record_decoder.decode
#: ``decode_records(bytes) -> list[EventRecord]`` from newline-delimited JSON.
decode_records = _record_decoder.decode_lines
#: ``decode_branches(bytes) -> list[BranchInfo]``.
decode_branches = _branches_decoder.decode


def encode_line(record: EventRecord) -> bytes:
    """The record as one JSONL line, newline included."""
    buf = bytearray()
    _encoder.encode_into(record, buf)
    buf += b"\n"
    return bytes(buf)


def decode_line(line: bytes) -> EventRecord | None:
    """The record on a complete line; ``None`` if it is torn (no newline) or not a record."""
    if not line.endswith(b"\n"):
        return None
    try:
        return decode_record(line)
    except msgspec.DecodeError:
        return None
