"""How a multi-record batch stays all or nothing across a kill.

A batch is written with one ``pwrite``, but a process killed in the middle of
it can leave its first lines complete on disk. So every line of a batch except
its last carries one extra top-level field, ``"batch_end": <last sequence of
the batch>``. A line holding it is an ordinary record for ``jq`` and for
:func:`eventstore._codec.decode_record` (unknown fields are ignored); single
appends and the last line of a batch carry nothing, so they cost nothing.

When a branch is opened, a last complete line with a ``batch_end`` beyond its
own sequence is the proof of a batch cut short: the tail scan cuts back to the
batch's first line (:func:`eventstore.file._tail.open_tail`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, chain, repeat
from operator import add, itemgetter

import msgspec

from .._errors import InvalidEvent
from .._json import encode
from .._records import EventRecord

__all__ = ("BATCH_END", "batch_end", "encode_batch")

#: The marker's key, as it appears in a stored line.
BATCH_END = b'"batch_end":'


#: A record's JSON without its closing brace.
_open = itemgetter(slice(None, -1))


class _Marker(msgspec.Struct):
    batch_end: int = 0


_marker_decoder = msgspec.json.Decoder(_Marker)


def _suggest(size: int) -> int:
    """A round limit above ``size``: the next power of two."""
    return 1 << (size - 1).bit_length()


def _too_large(sequence: int, size: int, max_record_size: int) -> InvalidEvent:
    return InvalidEvent(
        f"record {sequence} is {size} bytes, above max_record_size "
        f"{max_record_size} (the file store's limit per encoded record): store large "
        "payloads elsewhere and record a reference, or raise the limit with "
        f"FileEventStore(..., max_record_size={_suggest(size)})"
    )


def encode_batch(
    events: Sequence[EventRecord], max_record_size: int, ends: list[int] | None = None
) -> bytes:
    """The JSONL bytes of ``events``, all lines but the last marked with ``batch_end``.

    :param ends: if given, receives the offset just past each line.
    :raises InvalidEvent: if a record's line (without its marker) is larger
        than ``max_record_size``.
    """
    if len(events) == 1:
        # A single append: no marker, no buffer.
        line = encode(events[0]) + b"\n"
        if len(line) > max_record_size:
            raise _too_large(events[0].sequence, len(line), max_record_size)
        if ends is not None:
            ends.append(len(line))
        return line
    # Every line but the last loses its closing brace to the marker: the lines
    # are the records without it, joined by the marker (C-speed loops only).
    encoded = list(map(encode, events))
    sizes = list(map(len, encoded))
    if max(sizes) >= max_record_size:  # a line is one byte more: its newline
        n = next(n for n, size in enumerate(sizes) if size >= max_record_size)
        raise _too_large(events[n].sequence, sizes[n] + 1, max_record_size)
    marker = b"," + BATCH_END + b"%d}\n" % events[-1].sequence
    if ends is not None:
        marked = map(add, sizes, repeat(len(marker) - 1, len(sizes) - 1))
        ends.extend(accumulate(chain(marked, (sizes[-1] + 1,))))
    return marker.join(map(_open, encoded)) + b"}\n"


def batch_end(line: bytes) -> int:
    """The ``batch_end`` of a stored line, 0 if it has none or is not JSON."""
    if BATCH_END not in line:
        return 0
    try:
        return _marker_decoder.decode(line).batch_end
    except msgspec.DecodeError:
        return 0
