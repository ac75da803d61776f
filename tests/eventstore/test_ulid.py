"""ULID event ids: format, order, and the encoding against a plain reference."""

from __future__ import annotations

import re
import time

from hypothesis import given
from hypothesis import strategies as st

from eventstore import EventRecord, new_ulid
from eventstore._ulid import _encode, ulid_timestamp_ms

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference(value: int) -> str:
    """The ULID spec, literally: 26 characters of 5 bits, most significant first."""
    return "".join(CROCKFORD[(value >> (5 * (25 - n))) & 31] for n in range(26))


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_encoding_matches_the_reference(value: int) -> None:
    assert _encode(value) == reference(value)


def test_format_and_timestamp() -> None:
    before = time.time_ns() // 1_000_000
    ulid = new_ulid()
    after = time.time_ns() // 1_000_000
    assert re.fullmatch(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", ulid)
    assert before <= ulid_timestamp_ms(ulid) <= after


def test_strictly_increasing_within_and_across_milliseconds() -> None:
    ids = [new_ulid() for _ in range(50_000)]  # many per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_records_get_fresh_time_sortable_ids() -> None:
    first = EventRecord.new("s", "main", 1, "k")
    second = EventRecord.new("s", "main", 2, "k")
    assert first.event_id < second.event_id
    assert len(first.event_id) == 26
