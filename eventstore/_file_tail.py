"""Opening a branch file: its head from the tail, and torn-tail recovery.

Runs on the I/O thread. A crash can leave the last line torn (no newline, or
bytes that are not a record): a writer cuts it off and appends it to
``<branch>.jsonl.torn`` so nothing is silently mixed into reads or lost from
sight; a read-only store just stops before it (the writer may be mid-write).
A batch cut short by a kill (its last complete line carries a ``batch_end``
beyond its own sequence, see :mod:`eventstore._file_batch`) goes the same way,
back to its first line. Anything wrong on the line before is real corruption:
:class:`CorruptLog`.
"""

from __future__ import annotations

import os

import msgspec

from ._codec import decode_record
from ._errors import CorruptLog
from ._file_batch import batch_end
from ._file_index import count_lines, last_line
from ._file_writer import FileOps, Writer
from ._records import EventRecord

__all__ = ("TORN_SUFFIX", "cut_back", "open_tail", "prepare_root", "set_aside")

TORN_SUFFIX = ".torn"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _record(line: bytes) -> EventRecord | None:
    if not line.endswith(b"\n"):
        return None
    try:
        return decode_record(line)
    except msgspec.DecodeError:
        return None


def open_tail(
    writer: Writer,
    directory: str,
    name: str,
    session_id: str,
    branch_id: str,
    fork_sequence: int,
    known_size: int,
    *,
    repair: bool,
    sync: bool,
) -> tuple[int, int] | None:
    """``(head, good size)`` of a branch file, or ``None`` if ``known_size`` is still right.

    :param known_size: the good size already known (``-1``: none).
    :param repair: cut a torn last line off (writer) or just stop before it (reader).
    :raises CorruptLog: if the last complete line is not this branch's record.
    """
    handle = writer.handle(directory, name)
    if handle is None:
        return fork_sequence, 0
    ops = writer.ops
    size = handle.size if repair else ops.fstat(handle.fd).st_size
    if size == known_size:
        return None
    path = f"{directory}/{name}"
    end = size
    found: tuple[EventRecord, bytes] | None = None
    if end > 0:
        start, line = last_line(ops, handle.fd, end)
        record = _record(line)
        if record is None:
            # A torn last line: whatever was cut short was never acknowledged.
            end = start
            found = _complete_line(ops, handle.fd, path, end)
        else:
            found = record, line
    if found is not None:
        stop = batch_end(found[1])
        if stop > found[0].sequence:
            end = _batch_start(ops, handle.fd, end - len(found[1]), stop)
            found = _complete_line(ops, handle.fd, path, end)
    if repair and end < size:
        cut_back(writer, directory, name, end, sync=sync)
    if found is None:
        return fork_sequence, 0
    record, line = found
    if (
        record.session_id != session_id
        or record.branch_id != branch_id
        or record.sequence <= fork_sequence
    ):
        line_number = count_lines(ops, handle.fd, end - len(line)) + 1
        raise CorruptLog(
            path,
            line_number,
            f"last record is {record.session_id}/{record.branch_id}#{record.sequence}, "
            f"not an own event of {session_id}/{branch_id} after {fork_sequence}",
        )
    return record.sequence, end


def _complete_line(ops: FileOps, fd: int, path: str, end: int) -> tuple[EventRecord, bytes] | None:
    """The record on the line ending at ``end`` (``None`` at 0), which must be whole.

    :raises CorruptLog: if that line is not a record.
    """
    if end == 0:
        return None
    start, line = last_line(ops, fd, end)
    record = _record(line)
    if record is None:
        line_number = count_lines(ops, fd, start) + 1
        raise CorruptLog(path, line_number, "unreadable record before the last line")
    return record, line


def _batch_start(ops: FileOps, fd: int, start: int, end_sequence: int) -> int:
    """Where the batch ending at ``end_sequence`` begins, walking back from ``start``.

    Only on recovery: the batch's lines all carry the same ``batch_end``.
    """
    while start > 0:
        before, line = last_line(ops, fd, start)
        if batch_end(line) != end_sequence:
            break
        start = before
    return start


def cut_back(writer: Writer, directory: str, name: str, size: int, *, sync: bool) -> None:
    """Move the bytes of ``directory/name`` past ``size`` to its ``.torn`` file."""
    handle = writer.handle(directory, name)
    assert handle is not None
    ops = writer.ops
    end = ops.fstat(handle.fd).st_size
    if end <= size:
        handle.size = size
        return
    torn = ops.pread(handle.fd, end - size, size)
    if not torn.endswith(b"\n"):
        torn += b"\n"
    dir_fd = ops.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    try:
        flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW
        fd = ops.open(name + TORN_SUFFIX, flags, 0o600, dir_fd=dir_fd)
        try:
            offset = ops.fstat(fd).st_size
            view = memoryview(torn)
            while view:
                written = ops.pwrite(fd, view, offset)
                view = view[written:]
                offset += written
            if sync:
                ops.fsync(fd)
        finally:
            ops.close(fd)
        if sync:
            ops.fsync(dir_fd)
    finally:
        ops.close(dir_fd)
    ops.ftruncate(handle.fd, size)
    if sync:
        ops.fsync(handle.fd)
    handle.size = size


def prepare_root(writer: Writer, root_fd: int, directory: str, name: str, *, sync: bool) -> None:
    """Make ready for the first events of a new root branch.

    Creates the session directory if needed, then sets aside any leftover file
    (:func:`set_aside`).
    """
    ops = writer.ops
    try:
        ops.mkdir(directory.rpartition("/")[2], 0o700, dir_fd=root_fd)
    except FileExistsError:
        pass
    else:
        if sync:
            ops.fsync(root_fd)
    set_aside(writer, directory, name, sync=sync)


def set_aside(writer: Writer, directory: str, name: str, *, sync: bool) -> None:
    """Move the content of a branch file the manifest does not name yet to ``.torn``.

    Such a file is an orphan: a crash (or a close) struck after a new branch's
    first write and before the manifest named it, so none of it was
    acknowledged. Called before the manifest names the branch, so the orphan
    can never become part of it.
    """
    handle = writer.handle(directory, name)
    if handle is not None and writer.ops.fstat(handle.fd).st_size > 0:
        cut_back(writer, directory, name, 0, sync=sync)
