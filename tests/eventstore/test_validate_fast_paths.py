"""The append path's fast paths give the same bytes and the same errors as the slow ones.

``encode_batch`` encodes a batch with C-speed loops, the feed entries of a
write come from :func:`entries_bytes`, and ``check_fields`` takes a flat dict
and a kind it has seen before on a shorter path: each is checked here against
the plain per-record reference it replaces.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import msgspec
import pytest

from eventstore import EventRecord, InvalidEvent
from eventstore._fields import _round_trip, check_fields
from eventstore._ids import MAIN
from eventstore._json import encode_into
from eventstore._validate import check_batch
from eventstore.file._batch import BATCH_END, _too_large, encode_batch
from eventstore.file._feed import ENTRY, entries_bytes, entry_bytes

_MOMENT = datetime(2026, 1, 2, tzinfo=UTC)


def _reference(events: list[EventRecord], max_record_size: int, ends: list[int]) -> bytes:
    """encode_batch as it was: one record at a time into a buffer."""
    buf = bytearray()
    marker = b"," + BATCH_END + b"%d}\n" % events[-1].sequence
    for n, event in enumerate(events):
        start = len(buf)
        encode_into(event, buf, -1)
        size = len(buf) - start + 1
        if size > max_record_size:
            raise _too_large(event.sequence, size, max_record_size)
        if n == len(events) - 1:
            buf += b"\n"
        else:
            del buf[-1]
            buf += marker
        ends.append(len(buf))
    return bytes(buf)


# Pieces that could fool a byte-level split: braces, newlines, quotes, escapes.
_PIECES = ["a", "\n", "\r", "}", "{", '"', "\\", "}\n", "\u2028", "\x85", "é", "\x1c", "\x0b"]


def _batch(rng: random.Random) -> list[EventRecord]:
    events = []
    for n in range(rng.randint(2, 12)):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 8)))
        data = rng.choice([{"k": text}, [text, {"x}\n": text}], text, None, 1.5, {"n": [text]}])
        events.append(
            EventRecord(
                "s",
                MAIN,
                5 + n,
                "k" + text,
                data,
                {"m": text} if rng.random() < 0.3 else {},
                f"id{n}",
                _MOMENT,
                rng.randint(0, 10**12),
            )
        )
    return events


def test_encode_batch_matches_the_record_at_a_time_reference() -> None:
    rng = random.Random(16)
    for _ in range(2000):
        events = _batch(rng)
        limit = rng.choice([1 << 20, 90, 120, 150, 160, 200])
        want_ends: list[int] = []
        got_ends: list[int] = []
        try:
            want: bytes | str = _reference(events, limit, want_ends)
        except InvalidEvent as exc:
            want = str(exc)
        try:
            got: bytes | str = encode_batch(events, limit, got_ends)
        except InvalidEvent as exc:
            got = str(exc)
        assert got == want
        if isinstance(want, bytes):
            assert got_ends == want_ends


def test_entries_bytes_is_one_entry_bytes_per_record() -> None:
    ends = [10, 25, 26, 400]
    sequences = [7, 8, 9, 10]
    got = entries_bytes(101, 3, 5000, ends, iter(sequences))
    starts = [0, *ends[:-1]]
    want = b"".join(
        entry_bytes(101 + n, 3, end - start, 5000 + start, sequence)
        for n, (start, end, sequence) in enumerate(zip(starts, ends, sequences, strict=True))
    )
    assert got == want
    assert len(got) == 4 * ENTRY.size


def _record(**fields: object) -> EventRecord:
    base: dict[str, object] = {
        "session_id": "s1",
        "branch_id": MAIN,
        "sequence": 1,
        "kind": "message",
        "data": {"role": "user", "n": 1},
        "event_id": "e1",
        "recorded_at": _MOMENT,
    }
    base.update(fields)
    return EventRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"text": "lone \ud800 surrogate"}, id="surrogate"),
        pytest.param({"f": float("inf")}, id="infinity"),
        pytest.param({1: "int key"}, id="int-key"),
        pytest.param({"f": float("nan")}, id="nan"),
        pytest.param({"t": (1, 2)}, id="tuple"),
        pytest.param({"b": b"raw"}, id="bytes"),
    ],
)
@pytest.mark.parametrize("field", ["data", "metadata"])
def test_flat_dicts_are_refused_as_the_round_trip_refuses_them(
    data: dict[object, object], field: str
) -> None:
    with pytest.raises(InvalidEvent) as slow:
        _round_trip(data, field)
    with pytest.raises(InvalidEvent) as fast:
        check_fields(_record(**{field: data}))
    assert str(fast.value) == str(slow.value)


def test_a_flat_dict_is_kept_as_its_json() -> None:
    data = {"role": "user", "n": 1, "ok": True, "none": None}
    record = _record(data=data, metadata={"key": "k"})
    assert check_fields(record) == (msgspec.json.encode(data), b'{"key":"k"}')


class _Kind(str):
    pass


def test_a_seen_kind_does_not_let_a_bad_one_through() -> None:
    check_fields(_record(kind="message"))
    for kind in ("", "mess\x00age", "mess\ud800age", _Kind("message"), 7):
        with pytest.raises(InvalidEvent):
            check_fields(_record(kind=kind))
    check_fields(_record(kind="message"))


def test_check_batch_reports_the_first_problem_in_record_order() -> None:
    good = [_record(sequence=n, event_id=f"e{n}") for n in (1, 2, 3)]
    mixed = _record(session_id="other", sequence=2, event_id="x2")
    bad = _record(sequence=3, event_id="x3", kind="")
    with pytest.raises(InvalidEvent, match="one session and branch"):
        check_batch([good[0], mixed, bad])
    with pytest.raises(InvalidEvent, match="kind must be"):
        check_batch([good[0], bad, mixed])
    with pytest.raises(InvalidEvent, match="contiguous: expected 2, got 3"):
        check_batch([good[0], good[2]])
    with pytest.raises(InvalidEvent, match="repeat an event_id"):
        check_batch([good[0], _record(sequence=2, event_id="e1")])
    with pytest.raises(InvalidEvent, match="expected an EventRecord"):
        check_batch([good[0], "not a record"])  # type: ignore[list-item]
    assert check_batch(good) == good
