"""Finding records in a branch file without scanning it.

A branch file holds the branch's own events, one per line, with strictly
consecutive sequences. So:

* the head is the sequence on the last complete line, found by reading the
  file backwards from its end (:func:`last_line`);
* the byte offset of any sequence is found by a few probes — interpolation
  between known points, falling back to bisection — each reading one line
  (:class:`SparseIndex`), and the points found are kept as a sparse index;
* a range is streamed forward in fixed-size chunks decoded with msgspec's
  ``decode_lines`` (:func:`read_chunk`), so memory stays constant. Every
  record decoded is checked (its session, branch and sequence), not only
  those returned, so a read over a damaged line fails, naming it.

Everything here runs on the store's I/O thread.
"""

from __future__ import annotations

import bisect
import threading
from typing import NamedTuple

import msgspec

from .._codec import decode_record, decode_records
from .._errors import CorruptLog
from .._records import EventRecord
from ._writer import FileOps

__all__ = (
    "CHUNK",
    "Owner",
    "SparseIndex",
    "corrupt_at",
    "last_line",
    "read_chunk",
    "sequence_of",
)

#: Bytes read per step when streaming and probing.
CHUNK = 64 * 1024
#: Records between two points of the sparse index.
SPACING = 128
#: Points one index keeps at most, whatever the size of the log.
MAX_POINTS = 4096


class Owner(NamedTuple):
    """Whose records a branch file holds, and the sequence expected next."""

    session_id: str
    branch_id: str
    sequence: int


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
    ops: FileOps, fd: int, path: str, offset: int, data: bytes, owner: Owner, reason: str
) -> CorruptLog:
    """A :class:`CorruptLog` naming the first bad line of ``data``, read at ``offset``.

    A line is bad unless it holds exactly the record ``owner`` expects there:
    undecodable, blank, two records on one line, another session's or branch's
    record, or one out of sequence. Walks the lines one by one: error path only.
    """
    line_number = count_lines(ops, fd, offset) + 1
    session_id, branch_id, sequence = owner
    for line in data.split(b"\n")[:-1]:
        try:
            record = decode_record(line)
        except msgspec.DecodeError as exc:
            return CorruptLog(path, line_number, f"not a record: {exc}")
        found = (record.session_id, record.branch_id, record.sequence)
        if found != (session_id, branch_id, sequence):
            return CorruptLog(
                path,
                line_number,
                f"expected {session_id}/{branch_id}#{sequence}, found {_name(*found)}",
            )
        line_number += 1
        sequence += 1
    return CorruptLog(path, line_number, reason)


def _name(session_id: str, branch_id: str, sequence: int) -> str:
    return f"{session_id}/{branch_id}#{sequence}"


def read_chunk(
    ops: FileOps, fd: int, path: str, offset: int, end: int, owner: Owner, want: int = CHUNK
) -> tuple[list[EventRecord], int]:
    """Decode complete lines of ``fd[offset:end]``: at least one, about ``want`` bytes.

    Every record is checked: of ``owner``'s session and branch, sequences
    consecutive from ``owner.sequence``.

    :param owner: whose records the file holds, and the sequence of the line at ``offset``.
    :param want: bytes to read in one go (at most :data:`CHUNK`).
    :returns: the records and the offset just after them.
    :raises CorruptLog: for an undecodable line or a record out of place.
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
        raise corrupt_at(ops, fd, path, offset, data, owner, "truncated record")
    body = data[:cut]
    try:
        records = decode_records(body)
    except msgspec.DecodeError as exc:
        raise corrupt_at(ops, fd, path, offset, body, owner, str(exc)) from exc
    session_id, branch_id, first = owner
    # Three comparisons a record, the cheapest exact check: a line twice,
    # missing, swapped or of another session or branch fails one of them.
    if [
        r
        for r, sequence in zip(records, range(first, first + len(records)), strict=True)
        if r.sequence != sequence or r.session_id != session_id or r.branch_id != branch_id
    ]:
        raise corrupt_at(ops, fd, path, offset, body, owner, "records out of place")
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
        self,
        ops: FileOps,
        fd: int,
        path: str,
        sequence: int,
        low: tuple[int, int],
        high: tuple[int, int],
    ) -> tuple[int, int]:
        """A point ``(seq, offset)``, ``seq <= sequence``, at most :data:`SPACING` lines before.

        :param low: the first own line, ``(fork_sequence + 1, 0)``.
        :param high: the end, ``(head + 1, size)``.
        :raises CorruptLog: if a probed line's sequence is not between those of
            the known points around it (lines out of order).
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
            if not low[0] < point[0] < high[0]:
                line_number = count_lines(ops, fd, point[1]) + 1
                raise CorruptLog(
                    path,
                    line_number,
                    f"sequence {point[0]} between #{low[0]} and #{high[0]}: lines out of order",
                )
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
