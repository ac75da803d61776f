"""The file store's global feed: positions, the feed index and its stream table.

Every stored record carries a ``position`` (in its JSON line). The feed index
lists them in position order so ``read_feed(after)`` finds its start by
bisection and then reads only the records it returns::

    <root>/feed.idx       a 32-byte header, then one 32-byte entry per record:
                          position, stream number, line length, byte offset,
                          sequence (little-endian ``<QIIQQ``)
    <root>/feed.streams   stream number -> (session_id, branch_id), fixed-width
                          entries at ``number * 258``; number 0 is unused

The index spells no id: a session's ids live only in its stream entries, which
``delete_session`` can blank (zeros) so the feed skips that stream's entries and
nothing of the session is left in these files.

Each group-commit round appends its entries with one ``pwrite`` *before* the
records' lines, the first entry of a round flagged (:data:`ROUND`), and syncs
the index with the logs. So after a kill every record on disk has its entry,
and only the last round's entries can name records that never reached their
log: :meth:`FeedFile.recover` checks just those (the log must hold the line,
its batch must be whole, the manifest must name the branch) and cuts the
others. A round whose log write fails drops its entries again before the round
ends (:meth:`FeedFile.keep`).

Readers in another process (``read_only``) may see entries before their lines:
they stop at the first entry whose line is not complete yet, and before a batch
whose last line is missing, and try again later.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from itertools import count, repeat
from operator import add, itemgetter, sub
from typing import NamedTuple

import msgspec

from .._codec import decode_record, decode_records
from .._errors import CorruptLog
from .._ids import is_valid_identifier
from .._records import EventRecord
from ._batch import BATCH_END, batch_end
from ._leftover import leftover_problem
from ._manifest import read_manifest
from ._writer import DIRECTORY as _DIRECTORY
from ._writer import NOFOLLOW as _NOFOLLOW
from ._writer import FileOps

__all__ = (
    "ENTRY",
    "INDEX_FILE",
    "STREAMS_FILE",
    "FeedFile",
    "FeedPart",
    "Scan",
    "Streams",
    "entries_bytes",
    "entry_bytes",
)

INDEX_FILE = "feed.idx"
STREAMS_FILE = "feed.streams"
#: position, stream (high bit: first entry of a round), line length, offset, sequence.
ENTRY = struct.Struct("<QIIQQ")
#: One stream table entry: id lengths, then the ids, zero-padded.
STREAM = struct.Struct("<BB128s128s")
HEADER = b"eventjournal feed index v1\n".ljust(ENTRY.size, b"\0")
#: Flag on the stream field of a round's first entry.
ROUND = 1 << 31
#: Bytes of a branch file read ahead at a time while reading the feed.
_READ_AHEAD = 64 * 1024


class Entry(NamedTuple):
    position: int
    stream: int
    length: int
    offset: int
    sequence: int


#: An entry as read: (position, stream, length, offset, sequence).
RawEntry = tuple[int, int, int, int, int]
_POSITION, _STREAM, _LENGTH, _OFFSET, _SEQUENCE = range(5)
_by_offset = itemgetter(_OFFSET)


class FeedPart(NamedTuple):
    """What one write adds to the feed: its entries and its stream's table entry."""

    entries: bytes
    stream: int
    stream_entry: bytes


def entry_bytes(position: int, stream: int, length: int, offset: int, sequence: int) -> bytes:
    return ENTRY.pack(position, stream, length, offset, sequence)


def entries_bytes(
    first: int, stream: int, offset: int, ends: list[int], sequences: Iterable[int]
) -> bytes:
    """The entries of one write's records, at positions ``first`` onwards.

    Record ``n`` of the write ends ``ends[n]`` bytes past ``offset``, where its
    first line starts; one :func:`entry_bytes` each, in C-speed loops.
    """
    starts = [0, *ends[:-1]]
    return b"".join(
        map(
            ENTRY.pack,
            count(first),
            repeat(stream),
            map(sub, ends, starts),
            map(add, starts, repeat(offset)),
            sequences,
        )
    )


def _stream_entry(session_id: str, branch_id: str) -> bytes:
    s = session_id.encode()
    b = branch_id.encode()
    return STREAM.pack(len(s), len(b), s, b)


def _decode_stream(raw: bytes) -> tuple[str, str] | None:
    if len(raw) < STREAM.size:
        return None
    ls, lb, s, b = STREAM.unpack(raw)
    if not ls or not lb:
        return None
    try:
        session_id, branch_id = s[:ls].decode(), b[:lb].decode()
    except UnicodeDecodeError:
        return None
    if not (is_valid_identifier(session_id) and is_valid_identifier(branch_id)):
        return None
    return session_id, branch_id


class Streams:
    """The stream table in memory, both ways. Numbers are given on the event loop."""

    __slots__ = ("blank", "ids", "numbers", "raw")

    def __init__(self) -> None:
        #: How many numbers name no stream (a deleted session's, or a torn entry).
        self.blank = 0
        self.ids: list[tuple[str, str] | None] = [None]
        self.numbers: dict[tuple[str, str], int] = {}
        self.raw: dict[int, bytes] = {}

    def load(self, data: bytes, start: int = 1) -> None:
        """Adopt table entries ``start..`` from ``data`` (the table from entry ``start``)."""
        del self.ids[start:]
        for n in range(len(data) // STREAM.size):
            key = _decode_stream(data[n * STREAM.size : (n + 1) * STREAM.size])
            self.ids.append(key)
            if key is not None:
                self.numbers[key] = start + n
        self.blank = self.ids.count(None) - 1

    def drop(self, session_id: str, branch_id: str | None = None) -> list[int]:
        """Forget a deleted session's streams (or one branch's): their numbers.

        Their index entries stay, pointing at no stream: every scan skips them.
        """
        gone = [
            number
            for (session, branch), number in self.numbers.items()
            if session == session_id and (branch_id is None or branch == branch_id)
        ]
        for number in gone:
            key = self.ids[number]
            assert key is not None
            del self.numbers[key]
            self.ids[number] = None
            self.raw.pop(number, None)
        self.blank += len(gone)
        return gone

    def number(self, session_id: str, branch_id: str) -> tuple[int, bytes]:
        """The stream's number (a new one if needed) and its table entry."""
        key = (session_id, branch_id)
        number = self.numbers.get(key)
        if number is None:
            number = len(self.ids)
            self.ids.append(key)
            self.numbers[key] = number
        raw = self.raw.get(number)
        if raw is None:
            raw = self.raw[number] = _stream_entry(session_id, branch_id)
        return number, raw


class Scan(NamedTuple):
    records: list[EventRecord]
    #: Every entry up to this position was returned or skipped for good.
    covered: int
    #: The scan stopped at an entry whose record is not on disk yet (readers only).
    stalled: bool
    #: Entries remain beyond what this scan looked at.
    more: bool


class FeedFile:
    """The feed index and stream table of one root, on the I/O thread.

    :param writer: the store's I/O thread object (its ``handle`` opens branch
        files); typed loosely to keep this module below :mod:`._writer`'s users.
    """

    def __init__(self, ops: FileOps, root: str, *, read_only: bool, sync: bool) -> None:
        self.ops = ops
        self.root = root
        self.read_only = read_only
        self.sync_writes = sync
        self.fd: int | None = None
        self.streams_fd: int | None = None
        #: Bytes of the index acknowledged good (writer); the file's size (reader).
        self.size = 0
        self.streams = Streams()
        #: Stream numbers whose table entry is on disk (writer).
        self.written: set[int] = set()
        #: The stream table was written since its last sync.
        self.streams_dirty = False
        #: A round whose entries must be rewritten before anything is appended.
        self.pending: tuple[int, bytes] | None = None

    # -- opening ------------------------------------------------------------

    def open(self, *, create: bool = False) -> bool:
        """Open both files (``create``: a writer's first round makes them).

        :returns: ``False`` if there are none yet.
        """
        if self.fd is not None:
            return True
        sync = self.sync_writes
        flags = os.O_RDONLY if self.read_only else os.O_RDWR | (os.O_CREAT if create else 0)
        flags |= _NOFOLLOW
        ops = self.ops
        try:
            fd = ops.open(f"{self.root}/{INDEX_FILE}", flags, 0o600)
        except FileNotFoundError:
            return False
        try:
            streams_fd = ops.open(f"{self.root}/{STREAMS_FILE}", flags, 0o600)
        except FileNotFoundError:
            ops.close(fd)
            return False
        except BaseException:
            ops.close(fd)
            raise
        self.fd, self.streams_fd = fd, streams_fd
        if self.read_only:
            self.size = ops.fstat(fd).st_size
            self.reload_streams()
            return True
        created = False
        if ops.fstat(fd).st_size < len(HEADER):
            ops.ftruncate(fd, 0)
            ops.pwrite(fd, HEADER, 0)
            created = True
        if ops.fstat(streams_fd).st_size < STREAM.size:
            ops.pwrite(streams_fd, bytes(STREAM.size), 0)
            created = True
        if sync and created:
            ops.fsync(fd)
            ops.fsync(streams_fd)
            dir_fd = ops.open(self.root, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
            try:
                ops.fsync(dir_fd)
            finally:
                ops.close(dir_fd)
        end = ops.fstat(fd).st_size
        self.size = end - (end - len(HEADER)) % ENTRY.size
        return True

    def close(self) -> None:
        for fd in (self.fd, self.streams_fd):
            if fd is not None:
                self.ops.close(fd)
        self.fd = self.streams_fd = None

    def reload_streams(self) -> None:
        """Read the stream table entries not known yet (and a partial last one: not yet)."""
        assert self.streams_fd is not None
        start = len(self.streams.ids)
        end = self.ops.fstat(self.streams_fd).st_size // STREAM.size
        if end > start:
            data = self.ops.pread(self.streams_fd, (end - start) * STREAM.size, start * STREAM.size)
            self.streams.load(data[: len(data) // STREAM.size * STREAM.size], start)

    def stream_blank(self, number: int) -> bool:
        """Whether the table entry of ``number`` was blanked (a deleted session)."""
        assert self.streams_fd is not None
        raw = self.ops.pread(self.streams_fd, STREAM.size, number * STREAM.size)
        return len(raw) == STREAM.size and not any(raw)

    def recover(self, writer: object) -> int:
        """Repair the index after a kill; return the highest position it ever named.

        Cuts a partial entry, then checks the last round's entries against the
        logs and cuts those whose record is not whole on disk.
        """
        ops = self.ops
        assert self.fd is not None and self.streams_fd is not None
        # The stream table: whole entries only.
        table = ops.fstat(self.streams_fd).st_size
        if table % STREAM.size:
            ops.ftruncate(self.streams_fd, table - table % STREAM.size)
        size = ops.fstat(self.streams_fd).st_size
        data = (
            ops.pread(self.streams_fd, size - STREAM.size, STREAM.size)
            if size > STREAM.size
            else b""
        )
        self.streams.load(data)
        self.written = {n for n, key in enumerate(self.streams.ids) if key is not None}
        end = ops.fstat(self.fd).st_size
        end -= (end - len(HEADER)) % ENTRY.size
        self.size = end
        count = (end - len(HEADER)) // ENTRY.size
        if not count:
            ops.ftruncate(self.fd, end)
            return 0
        highest = self.entry(count - 1).position
        first = self._round_start(count)
        # Raw tuples: a round of a large batch holds thousands of entries.
        entries = self.entries(first, count)
        kept = self._whole(writer, entries)
        if len(kept) != len(entries) or end != ops.fstat(self.fd).st_size:
            start = len(HEADER) + first * ENTRY.size
            self.size = start
            self._write_round(start, b"".join(_pack(Entry(*e)) for e in kept))
            if self.sync_writes:
                ops.fsync(self.fd)
        return highest

    def _round_start(self, count: int) -> int:
        """The index of the last round's flagged first entry (0 if none is flagged).

        Read backwards a block at a time: a round of a large batch holds
        thousands of entries, and one read each made a cold open cost
        milliseconds per thousand.
        """
        end = count
        while end > 0:
            start = max(0, end - 1024)
            block = self.entries(start, end)
            for index in range(len(block) - 1, -1, -1):
                if block[index][1] & ROUND:
                    return start + index
            end = start
        return 0

    def _whole(self, writer: object, entries: list[RawEntry]) -> list[RawEntry]:
        """The entries a kill did not leave dangling.

        Cut only what a kill can leave: entries whose line lies beyond the end
        of its file (which ends in a line cut short, or at the line before),
        or whose batch does; and, for a write starting a file
        (offset 0), entries whose file is missing or whose branch the manifest
        does not name (an orphan set aside later). Never a sequence the
        manifest records as reached. Anything else that looks wrong is
        damage, which reads report; its entries stay.
        """
        by_stream: dict[int, list[RawEntry]] = {}
        for entry in entries:
            by_stream.setdefault(entry[_STREAM] & ~ROUND, []).append(entry)
        good: set[int] = set()
        for number, group in by_stream.items():
            group.sort(key=_by_offset)
            key = self.streams.ids[number] if number < len(self.streams.ids) else None
            if key is None:
                continue
            session_id, branch_id = key
            directory = f"{self.root}/{session_id}"
            starts_file = group[0][_OFFSET] == 0
            try:
                manifest = read_manifest(self.ops, directory, session_id)
                handle = writer.handle(directory, f"{branch_id}.jsonl")  # type: ignore[attr-defined]
            except (CorruptLog, OSError):
                good.update(entry[_POSITION] for entry in group)
                continue
            metas = {} if manifest is None else {m.branch_id: m for m in manifest.branches}
            meta = metas.get(branch_id)
            # What the manifest records as reached was acknowledged: never cut.
            known = 0 if meta is None else meta.known_head
            good.update(entry[_POSITION] for entry in group if entry[_SEQUENCE] <= known)
            named = meta is not None
            if handle is None or not named:
                size = 0 if handle is None else self.ops.fstat(handle.fd).st_size
                leftover = handle is None or (
                    leftover_problem(self.ops, handle.fd, session_id, branch_id, size) is None
                )
                if not (starts_file and leftover):
                    # More than one first write: a lost manifest, which reads report.
                    good.update(entry[_POSITION] for entry in group)
                continue
            size = self.ops.fstat(handle.fd).st_size
            present = [entry for entry in group if entry[_OFFSET] + entry[_LENGTH] <= size]
            if len(present) < len(group):
                # A kill leaves nothing or a line without its newline past the
                # last whole line; a whole line there is damage: keep the entries.
                first = group[len(present)]
                rest = self.ops.pread(handle.fd, max(0, size - first[_OFFSET]), first[_OFFSET])
                if b"\n" in rest or first[_OFFSET] > size:
                    good.update(entry[_POSITION] for entry in group)
                    continue
            # A batch cut short (its last line missing) goes, as the log's open cuts it.
            if present:
                last = present[-1]
                line = self.ops.pread(handle.fd, last[_LENGTH], last[_OFFSET])
                stop = batch_end(line) if BATCH_END in line else 0
                if stop > last[_SEQUENCE]:
                    while present:
                        line = self.ops.pread(handle.fd, present[-1][_LENGTH], present[-1][_OFFSET])
                        if batch_end(line) != stop:
                            break
                        present.pop()
            good.update(entry[_POSITION] for entry in present)
        out: list[RawEntry] = []
        for entry in entries:
            if entry[_POSITION] in good and (not out or entry[_POSITION] > out[-1][_POSITION]):
                out.append(entry)
        return out

    # -- writing (writer only) ---------------------------------------------------

    def append(self, parts: Iterable[FeedPart]) -> int | None:
        """Write a round's stream entries, then its index entries; return where they start.

        :raises OSError: if a write fails (the index is cut back first).
        """
        if self.fd is None:
            self.open(create=True)
        assert self.fd is not None and self.streams_fd is not None
        if self.pending is not None:
            self._write_round(*self.pending)
        ops = self.ops
        if type(parts) is tuple and len(parts) == 1:
            # One write's round (an inline write): no joining, the flag spliced in.
            part = parts[0]
            if part.stream not in self.written:
                _pwrite_all(ops, self.streams_fd, part.stream_entry, part.stream * STREAM.size)
                self.written.add(part.stream)
                self.streams_dirty = True
            entries = part.entries
            flagged = entries[:8] + (part.stream | ROUND).to_bytes(4, "little") + entries[12:]
            return self._append_entries(flagged)
        chunks: list[bytes] = []
        for part in parts:
            if part.stream not in self.written:
                _pwrite_all(ops, self.streams_fd, part.stream_entry, part.stream * STREAM.size)
                self.written.add(part.stream)
                self.streams_dirty = True
            chunks.append(part.entries)
        if not chunks:
            return None
        data = bytearray(b"".join(chunks))
        # Flag the round's first entry.
        stream = int.from_bytes(data[8:12], "little") | ROUND
        data[8:12] = stream.to_bytes(4, "little")
        return self._append_entries(bytes(data))

    def _append_entries(self, data: bytes) -> int:
        start = self.size
        try:
            assert self.fd is not None
            _pwrite_all(self.ops, self.fd, data, start)
        except OSError:
            self.pending = (start, b"")
            self._retry()
            raise
        self.size = start + len(data)
        return start

    def keep(self, start: int, parts: Iterable[FeedPart], sync: bool) -> None:
        """Rewrite the round at ``start`` with only ``parts`` (the others failed)."""
        data = bytearray(b"".join(part.entries for part in parts))
        if data:
            stream = int.from_bytes(data[8:12], "little") | ROUND
            data[8:12] = stream.to_bytes(4, "little")
        self.pending = (start, bytes(data))
        self._retry(sync)

    def blank(self, numbers: list[int]) -> None:
        """Overwrite the table entries of dropped streams (:meth:`Streams.drop`) with
        zeros, so no id of a deleted session stays in the feed's files."""
        if not numbers:
            return
        if self.fd is None:
            self.open(create=True)
        assert self.streams_fd is not None
        for number in numbers:
            _pwrite_all(self.ops, self.streams_fd, bytes(STREAM.size), number * STREAM.size)
        if self.sync_writes:
            self.ops.fsync(self.streams_fd)

    def sync(self) -> None:
        assert self.fd is not None and self.streams_fd is not None
        if self.streams_dirty:
            # Only when a round named a new stream: most rounds add index entries only.
            self.ops.fsync(self.streams_fd)
            self.streams_dirty = False
        self.ops.fsync(self.fd)

    def _retry(self, sync: bool = False) -> None:
        # A failure leaves ``pending`` set: the next append tries again first.
        if self.pending is None:
            return
        try:
            self._write_round(*self.pending)
            if sync:
                assert self.fd is not None
                self.ops.fsync(self.fd)
        except OSError:
            return

    def _write_round(self, start: int, data: bytes) -> None:
        assert self.fd is not None
        if data:
            _pwrite_all(self.ops, self.fd, data, start)
        self.ops.ftruncate(self.fd, start + len(data))
        self.size = start + len(data)
        self.pending = None

    # -- reading -------------------------------------------------------------

    def count(self) -> int:
        """Whole entries in the index."""
        assert self.fd is not None
        size = self.ops.fstat(self.fd).st_size if self.read_only else self.size
        return max(0, (size - len(HEADER)) // ENTRY.size)

    def entry(self, index: int) -> Entry:
        assert self.fd is not None
        raw = self.ops.pread(self.fd, ENTRY.size, len(HEADER) + index * ENTRY.size)
        return Entry(*ENTRY.unpack(raw))

    def entries(self, first: int, end: int) -> list[tuple[int, int, int, int, int]]:
        """Raw entries ``first..end``: (position, stream, length, offset, sequence)."""
        assert self.fd is not None
        if end <= first:
            return []
        raw = self.ops.pread(self.fd, (end - first) * ENTRY.size, len(HEADER) + first * ENTRY.size)
        raw = raw[: len(raw) // ENTRY.size * ENTRY.size]
        return list(ENTRY.iter_unpack(raw))

    def find(self, after: int, count: int) -> int:
        """The index of the first entry with ``position > after`` (``count`` if none).

        Positions are dense but for failed writes, so the first probe is
        ``after - first position``; bisection takes over when it misses.
        """
        if not count:
            return 0
        guess = min(max(after - self.entry(0).position + 1, 0), count - 1)
        if self.entry(guess).position > after and (
            guess == 0 or self.entry(guess - 1).position <= after
        ):
            return guess
        low, high = 0, count
        while low < high:
            middle = (low + high) // 2
            if self.entry(middle).position > after:
                high = middle
            else:
                low = middle + 1
        return low

    def last_live(self, count: int) -> int:
        """The position of the last of the first ``count`` entries whose stream still
        exists (a writer's feed head once a delete dropped streams); 0 if none."""
        ids = self.streams.ids
        end = count
        while end > 0:
            start = max(0, end - 256)
            for entry in reversed(self.entries(start, end)):
                number = entry[1] & ~ROUND
                if number < len(ids) and ids[number] is not None:
                    return entry[0]
            end = start
        return 0

    def last_visible(self, writer: object) -> int:
        """The highest position whose record is readable now (readers' feed head)."""
        count = self.count()
        back = 256
        while True:
            first = max(0, count - back)
            before = self.entry(first - 1).position if first else 0
            scan = self.scan(writer, before, first, count, None, None, None, cap=None)
            if scan.covered > before or first == 0:
                return scan.covered
            back *= 4

    def scan(
        self,
        writer: object,
        after: int,
        first: int,
        count: int,
        limit: int | None,
        kinds: frozenset[str] | None,
        session_ids: frozenset[str] | None,
        *,
        cap: int | None = 4096,
    ) -> Scan:
        """Records of entries ``first..`` (``count`` known), after position ``after``.

        Looks at about ``cap`` entries (more to finish a batch) and returns at
        most ``limit`` records. Consecutive lines of one branch file are read
        with one ``pread`` and all are decoded in one call. A writer skips an
        entry whose record is gone (cut, or its session deleted); a reader
        stops at one not yet written, and before a batch whose last line is
        missing.

        :raises CorruptLog: for a line that is not a record (writer).
        """
        end = count if cap is None else min(count, first + cap)
        if limit is not None and kinds is None:
            # Entries skipped by the session filter aside, ``limit`` entries suffice.
            end = min(end, first + max(limit, 64 if session_ids is None else 1024))
        entries = self.entries(first, end)
        buffers: dict[int, tuple[int, bytes]] = {}
        handles: dict[int, object] = {}
        picked, chunks, stalled = self._pick(writer, entries, session_ids, buffers, handles)
        # A batch is whole or absent: finish one the step cut, or drop it.
        while picked and not stalled:
            last = picked[-1]
            stop = _last_batch_end(chunks[-1])
            if stop <= last[4]:
                break
            more_end = min(count, end + stop - last[4])
            more = self.entries(end, more_end)
            if not more:
                stalled = self.read_only
                break
            end = more_end
            entries += more
            extra, extra_chunks, stalled = self._pick(writer, more, session_ids, buffers, handles)
            picked += extra
            chunks += extra_chunks
        records, good, body = self._decode(picked, chunks)
        if good < len(picked):
            # A reader stopped at a line not yet whole: nothing from it on.
            stalled = True
            del picked[good:]
        if picked and _open_batch(picked, body):
            # A batch whose last line is not there yet: none of it shows.
            stalled = True
            stream = picked[-1][1] & ~ROUND
            first_sequence = _open_batch(picked, body)
            while (
                records
                and records[-1].sequence >= first_sequence
                and self.streams.numbers.get((records[-1].session_id, records[-1].branch_id))
                == stream
            ):
                records.pop()
        if stalled:
            covered = records[-1].position if records else after
        else:
            covered = entries[-1][0] if entries else after
        if kinds is not None:
            records = [r for r in records if r.kind in kinds]
        if limit is not None and len(records) > limit:
            records = records[:limit]
            covered = records[-1].position
        return Scan(records, max(covered, after), stalled, end < count)

    def _pick(
        self,
        writer: object,
        entries: list[tuple[int, int, int, int, int]],
        session_ids: frozenset[str] | None,
        buffers: dict[int, tuple[int, bytes]],
        handles: dict[int, object],
    ) -> tuple[list[tuple[int, int, int, int, int]], list[bytes], bool]:
        """The entries to decode and their bytes, one chunk per run of one file.

        :returns: the entries, the chunks (consecutive lines, in entry order),
            and whether a reader must wait for the writer.
        """
        streams = self.streams
        reader = self.read_only
        ids = streams.ids
        picked: list[tuple[int, int, int, int, int]] = []
        chunks: list[bytes] = []
        # Runs: consecutive entries of one stream whose lines follow each other.
        runs: list[list[int]] = []  # [number, first entry, end entry, start offset, end offset]
        current: list[int] | None = None
        for n, entry in enumerate(entries):
            number = entry[1] & ~ROUND
            if current is not None and number == current[0] and entry[3] == current[4]:
                current[2] = n + 1
                current[4] += entry[2]
                continue
            current = [number, n, n + 1, entry[3], entry[3] + entry[2]]
            runs.append(current)
        for number, low, high, start, stop in runs:
            if number >= len(ids) and reader:
                self.reload_streams()
                ids = streams.ids
                if number >= len(ids):
                    return picked, chunks, True
            key = ids[number] if number < len(ids) else None
            if key is None or (session_ids is not None and key[0] not in session_ids):
                continue
            data = self._bytes(buffers, handles, writer, number, key, start, stop)
            if len(data) < stop - start:
                # Keep the entries whose lines are all there.
                whole = low
                while whole < high and entries[whole][3] + entries[whole][2] - start <= len(data):
                    whole += 1
                if whole > low:
                    line_end = entries[whole - 1][3] + entries[whole - 1][2] - start
                    picked += entries[low:whole]
                    chunks.append(data[:line_end])
                if reader and not self.stream_blank(number):
                    return picked, chunks, True
                continue
            picked += entries[low:high]
            chunks.append(data)
        return picked, chunks, False

    def _bytes(
        self,
        buffers: dict[int, tuple[int, bytes]],
        handles: dict[int, object],
        writer: object,
        number: int,
        key: tuple[str, str],
        start: int,
        stop: int,
    ) -> bytes:
        """Bytes ``start..stop`` of the stream's branch file (fewer if it is shorter)."""
        buffered = buffers.get(number)
        if buffered is not None:
            at = start - buffered[0]
            if at >= 0 and stop - buffered[0] <= len(buffered[1]):
                return buffered[1][at : stop - buffered[0]]
        handle = handles.get(number)
        if handle is None:
            session_id, branch_id = key
            try:
                handle = writer.handle(f"{self.root}/{session_id}", f"{branch_id}.jsonl")  # type: ignore[attr-defined]
            except OSError:
                handle = None
            if handle is None:
                return b""
            handles[number] = handle
        data = self.ops.pread(handle.fd, max(stop - start, _READ_AHEAD), start)  # type: ignore[attr-defined]
        buffers[number] = (start, data)
        return data[: stop - start]

    def _decode(
        self, picked: list[tuple[int, int, int, int, int]], chunks: list[bytes]
    ) -> tuple[list[EventRecord], int, bytes]:
        """Decode the picked lines, each checked against its entry.

        A line holding another record (its bytes were cut and written again)
        is dropped; a reader stops at the first line it cannot decode yet.

        :returns: the records, how many of ``picked`` were dealt with (fewer
            when a reader stopped), and the lines' bytes.
        :raises CorruptLog: for a writer's line that is not a record.
        """
        if not picked:
            return [], 0, b""
        body = b"".join(chunks)
        try:
            records = decode_records(body)
        except msgspec.DecodeError:
            records = []
        # Positions are unique in the store: a line with its entry's position is its record.
        if len(records) == len(picked) and [r.position for r in records] == [e[0] for e in picked]:
            return records, len(picked), body
        # The slow path: line by line.
        out: list[EventRecord] = []
        offset = 0
        for n, entry in enumerate(picked):
            line = body[offset : offset + entry[2]]
            offset += entry[2]
            record = _decode(line)
            if record is None:
                if self.read_only:
                    return out, n, body
                key = self.streams.ids[entry[1] & ~ROUND]
                path = f"{self.root}/{key[0]}/{key[1]}.jsonl" if key else self.root
                raise CorruptLog(path, 0, f"no record at byte {entry[3]} (feed #{entry[0]})")
            if record.position == entry[0] and record.sequence == entry[4]:
                out.append(record)
        return out, len(picked), body


def _open_batch(picked: list[tuple[int, int, int, int, int]], body: bytes) -> int:
    """The first sequence of a batch cut short at the end of ``picked``, else 0.

    ``body`` holds the lines of ``picked`` (and perhaps more after them).
    """
    end = sum(entry[2] for entry in picked)
    last = picked[-1]
    line = body[end - last[2] : end]
    stop = batch_end(line) if BATCH_END in line else 0
    if stop <= last[4]:
        return 0
    stream = last[1] & ~ROUND
    first = last[4]
    for entry in reversed(picked[:-1]):
        end -= last[2]
        line = body[end - entry[2] : end]
        if entry[1] & ~ROUND != stream or entry[4] != first - 1 or batch_end(line) != stop:
            break
        first, last = entry[4], entry
    return first


def _last_batch_end(chunk: bytes) -> int:
    """The ``batch_end`` of the last line of ``chunk`` (0 if it has none)."""
    start = chunk.rfind(b"\n", 0, len(chunk) - 1) + 1
    line = chunk[start:]
    return batch_end(line) if BATCH_END in line else 0


def _decode(line: bytes) -> EventRecord | None:
    if not line.endswith(b"\n"):
        return None
    try:
        return decode_record(line)
    except msgspec.DecodeError:
        return None


def _pack(entry: Entry) -> bytes:
    return ENTRY.pack(
        entry.position, entry.stream & ~ROUND, entry.length, entry.offset, entry.sequence
    )


def _pwrite_all(ops: FileOps, fd: int, data: bytes, offset: int) -> None:
    written = ops.pwrite(fd, data, offset)
    if written == len(data):
        return
    if written <= 0:
        raise OSError(5, "short write")
    view = memoryview(data)[written:]
    offset += written
    while view:
        written = ops.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(5, "short write")
        view = view[written:]
        offset += written
