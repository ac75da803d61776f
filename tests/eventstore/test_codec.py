"""Round-trip properties of the JSON codec, over every record the strategies make."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import EventRecord
from eventstore._codec import decode_record, decode_records
from eventstore._json import encode
from eventstore._validate import check_event
from eventstore.testing import event_records, json_values

from ._file_helpers import encode_line


@given(event_records())
def test_every_record_round_trips_as_one_line(record: EventRecord) -> None:
    line = encode_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = decode_record(line)
    assert back == record
    assert back.recorded_at == record.recorded_at and back.recorded_at.tzinfo is not None
    assert type(back.data) is type(record.data)


@given(st.lists(event_records(), max_size=8))
def test_lines_round_trip_as_a_log(records: list[EventRecord]) -> None:
    log = b"".join(encode_line(r) for r in records)
    assert decode_records(log) == records


@given(event_records())
def test_lines_are_plain_json_any_tool_reads(record: EventRecord) -> None:
    """``jq`` and ``json.loads`` read the same fields the decoder does."""
    plain = json.loads(encode_line(record))
    assert list(plain) == list(record.__struct_fields__)
    assert plain["session_id"] == record.session_id
    assert plain["sequence"] == record.sequence
    assert plain["event_id"] == record.event_id
    assert plain["recorded_at"].endswith("Z") or "+" in plain["recorded_at"]


@given(event_records())
def test_generated_records_are_valid_events(record: EventRecord) -> None:
    assert check_event(record) is record


@given(json_values())
def test_payloads_survive_the_codec_unchanged(value: object) -> None:
    assert msgspec.json.decode(encode(value)) == value


@given(event_records(), st.data())
def test_a_torn_line_never_decodes(record: EventRecord, data: st.DataObject) -> None:
    """Any cut short of the closing brace is undecodable: what crash recovery relies on.

    (Cut right after the brace, only the newline is missing, which is why a line
    without its newline counts as torn too.)
    """
    line = encode_line(record)
    cut = data.draw(st.integers(0, len(line) - 3), label="cut")
    with pytest.raises(msgspec.DecodeError):
        decode_record(line[:cut])
