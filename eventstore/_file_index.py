"""Finding records in a branch file without scanning it.

A branch file holds the branch's own events, one per line, with strictly
consecutive sequences. So:

* the head is the sequence on the last complete line, found by reading the
  file backwards from its end (:func:`last_line`);
* the byte offset of any sequence is found by a few probes — interpolation
  between known points, falling back to bisection — each reading one line
  (:class:`SparseIndex`), and the points found are kept as a sparse index;
* a range is streamed forward in fixed-size chunks decoded with msgspec's
  ``decode_lines`` (:func:`read_chunk`), so memory stays constant.

Everything here runs on the store's I/O thread.
"""

from __future__ import annotations

import bisect
import threading

import msgspec

from ._codec import decode_records
from ._errors import CorruptLog
from ._file_writer import FileOps
from ._records import EventRecord

__all__ = ("CHUNK", "SparseIndex", "corrupt_at", "last_line", "read_chunk", "sequence_of")

#: Bytes read per step when streaming and probing.
CHUNK = 64 * 1024
#: Records between two points of the sparse index.
SPACING = 128
#: Points one index keeps at most, whatever the size of the log.
MAX_POINTS = 4096


class _Sequence(msgspec.Struct):
    sequence: int


_sequence_decoder = msgspec.json.Decoder(_Sequence)


def sequence_of(line: bytes) -> int:
    """The ``sequence`` field of one JSON line, without decoding the rest.

    :raises msgspec.DecodeError: if the line is not a record.
    """
    return _sequence_decoder.decode(line).sequence


def last_line(ops: FileOps, fd: int, end: int) -> tuple[int, bytes]:
    """The last line of ``fd[:end]``, as ``(start offset, bytes)``.

    The line's own trailing newline, if any, is included.
    """
    step = 4096
    pos = end
    tail = b""
    while pos > 0:
        size = min(step, pos)
        pos -= size
        tail = ops.pread(fd, size, pos) + tail
        cut = tail.rfind(b"\n", 0, len(tail) - 1)
        if cut >= 0:
            return pos + cut + 1, tail[cut + 1 :]
        step = min(step * 2, 1 << 22)
    return 0, tail


def count_lines(ops: FileOps, fd: int, end: int) -> int:
    """Newlines in ``fd[:end]``: a line number, on the error path only."""
    count = 0
    pos = 0
    while pos < end:
        data = ops.pread(fd, min(CHUNK, end - pos), pos)
        if not data:
            break
        count += data.count(b"\n")
        pos += len(data)
    return count


def corrupt_at(
    ops: FileOps, fd: int, path: str, offset: int, data: bytes, reason: str
) -> CorruptLog:
    """A :class:`CorruptLog` naming the first bad line of ``data`` read at ``offset``."""
    line_number = count_lines(ops, fd, offset) + 1
    for line in data.splitlines():
        try:
            msgspec.json.decode(line, type=EventRecord)
        except msgspec.DecodeError as exc:
            return CorruptLog(path, line_number, f"{reason}: {exc}")
        line_number += 1
    return CorruptLog(path, line_number, reason)


def read_chunk(
    ops: FileOps, fd: int, path: str, offset: int, end: int, expected: int, want: int = CHUNK
) -> tuple[list[EventRecord], int]:
    """Decode complete lines of ``fd[offset:end]``: at least one, about ``want`` bytes.

    :param expected: the sequence of the line at ``offset``.
    :param want: bytes to read in one go (at most :data:`CHUNK`).
    :returns: the records and the offset just after them.
    :raises CorruptLog: for an undecodable line or a break in the sequences.
    """
    size = min(max(want, 4096), CHUNK, end - offset)
    data = ops.pread(fd, size, offset)
    cut = data.rfind(b"\n") + 1
    while cut == 0 and offset + len(data) < end:
        # One record larger than a chunk: read on until its newline.
        more = ops.pread(
            fd, min(max(len(data), CHUNK), end - offset - len(data)), offset + len(data)
        )
        if not more:
            break
        data += more
        cut = data.rfind(b"\n") + 1
    if cut == 0:
        raise corrupt_at(ops, fd, path, offset, data, "truncated record")
    body = data[:cut]
    try:
        records = decode_records(body)
    except msgspec.DecodeError as exc:
        raise corrupt_at(ops, fd, path, offset, body, str(exc)) from exc
    if records[0].sequence != expected or records[-1].sequence != expected + len(records) - 1:
        line_number = count_lines(ops, fd, offset) + 1
        raise CorruptLog(
            path,
            line_number,
            f"expected sequences {expected}..{expected + len(records) - 1}, "
            f"found {records[0].sequence}..{records[-1].sequence}",
        )
    return records, offset + cut


class SparseIndex:
    """Known ``(sequence, byte offset)`` points of one branch file.

    Filled lazily by the probes of :meth:`locate` and by appends, never by a
    full scan. Shared by the loop (appends) and the I/O thread (probes), hence
    the lock.
    """

    __slots__ = ("_lock", "_offsets", "_sequences")

    def __init__(self) -> None:
        self._sequences: list[int] = []
        self._offsets: list[int] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sequences)

    def note(self, sequence: int, offset: int) -> None:
        """Remember that the line of ``sequence`` starts at ``offset``."""
        with self._lock:
            at = bisect.bisect_left(self._sequences, sequence)
            if at < len(self._sequences) and self._sequences[at] == sequence:
                return
            near = self._sequences
            if (at > 0 and sequence - near[at - 1] < SPACING // 2) or (
                at < len(near) and near[at] - sequence < SPACING // 2
            ):
                return
            self._sequences.insert(at, sequence)
            self._offsets.insert(at, offset)
            if len(self._sequences) > MAX_POINTS:
                # Thin out rather than grow with the log: a coarser index only
                # costs a probe or two more per seek.
                del self._sequences[1::2], self._offsets[1::2]

    def forget_after(self, offset: int) -> None:
        """Drop points at or beyond ``offset`` (the file was cut back)."""
        with self._lock:
            at = bisect.bisect_left(self._offsets, offset)
            del self._sequences[at:], self._offsets[at:]

    def _bounds(
        self, sequence: int, low: tuple[int, int], high: tuple[int, int]
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        with self._lock:
            at = bisect.bisect_right(self._sequences, sequence)
            if at > 0 and self._sequences[at - 1] >= low[0]:
                low = (self._sequences[at - 1], self._offsets[at - 1])
            if at < len(self._sequences) and self._sequences[at] <= high[0]:
                high = (self._sequences[at], self._offsets[at])
        return low, high

    def locate(
        self, ops: FileOps, fd: int, sequence: int, low: tuple[int, int], high: tuple[int, int]
    ) -> tuple[int, int]:
        """A point ``(seq, offset)``, ``seq <= sequence``, at most :data:`SPACING` lines before.

        :param low: the first own line, ``(fork_sequence + 1, 0)``.
        :param high: the end, ``(head + 1, size)``.
        """
        low, high = self._bounds(sequence, low, high)
        bisecting = False
        while sequence - low[0] > SPACING:
            span = high[1] - low[1]
            if bisecting:
                guess = low[1] + span // 2
            else:
                # Records of one branch are similar in size: aim a little short of
                # the target so the probe lands just before it.
                per_line = span / (high[0] - low[0])
                guess = low[1] + int((sequence - low[0] - 2) * per_line)
            guess = min(max(guess, low[1] + 1), high[1] - 1)
            point = self._probe(ops, fd, guess, high[1])
            if point is None or point[1] >= high[1]:
                point = self._probe(ops, fd, low[1] + 1, high[1])
                if point is None or point[1] >= high[1]:
                    break
            before = high[0] - low[0]
            self.note(*point)
            if point[0] <= sequence:
                low = point
            else:
                high = point
            # Interpolation that does not halve the range gives way to bisection.
            bisecting = (high[0] - low[0]) * 2 > before
        return low

    @staticmethod
    def _probe(ops: FileOps, fd: int, pos: int, end: int) -> tuple[int, int] | None:
        """The first line starting at or after ``pos`` (before ``end``): ``(seq, offset)``."""
        data = ops.pread(fd, min(4096, end - pos + 1), pos - 1)
        newline = data.find(b"\n")
        if newline < 0:
            return None
        start = pos + newline
        if start >= end:
            return None
        line = data[newline + 1 :]
        while b"\n" not in line and start + len(line) < end:
            more = ops.pread(
                fd, min(max(len(line), 4096), end - start - len(line)), start + len(line)
            )
            if not more:
                break
            line += more
        line = line[: line.find(b"\n") + 1] if b"\n" in line else line
        try:
            return sequence_of(line), start
        except msgspec.DecodeError:
            return None
