"""Branch files no manifest names: a crash's leftover, or proof of lost history.

A new root branch's first events are written before the manifest entry that
names them (:meth:`FileEventStore._create_root`), so a kill between the two
leaves a file nothing names. That file is exactly one write: one batch that
starts at sequence 1 (all its lines but the last carry the batch's
``batch_end``, :mod:`eventstore.file._batch`), perhaps cut short. Its events
were never acknowledged and the store may move them aside.

Anything else in an unnamed file was acknowledged once: a second write, a
first sequence other than 1, records of another branch. Only a manifest named
the branch for those to be written, so the manifest was lost or replaced, and
the store must refuse (:class:`CorruptLog`) rather than start the branch over
on top of them. The check reads two lines, the first and the last complete one.
"""

from __future__ import annotations

import errno
import os

from .._codec import decode_line
from .._errors import CorruptLog
from .._ids import is_valid_identifier
from .._records import EventRecord
from ._batch import batch_end
from ._index import count_lines, last_line
from ._writer import FileOps, Writer, _Handle

__all__ = (
    "BRANCH_SUFFIX",
    "LINK_REFUSED",
    "branch_handle",
    "check_leftover",
    "check_unnamed",
    "leftover_problem",
)

#: A branch's file is ``<branch_id>.jsonl``.
BRANCH_SUFFIX = ".jsonl"

#: Why a symbolic link in the store is refused rather than followed.
LINK_REFUSED = "a symbolic link; the store follows no links out of its root"

_FIRST_LINE_STEP = 64 * 1024


def branch_handle(writer: Writer, directory: str, name: str) -> _Handle | None:
    """The writer's descriptor of a branch file, ``None`` if there is none.

    :raises CorruptLog: if the name is a symbolic link.
    """
    try:
        return writer.handle(directory, name)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise CorruptLog(f"{directory}/{name}", 0, LINK_REFUSED) from exc


def check_unnamed(writer: Writer, directory: str, session_id: str) -> None:
    """Refuse a session directory without a manifest whose branch files prove it had one.

    :raises CorruptLog: naming the first such file and line.
    """
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        branch_id = name.removesuffix(BRANCH_SUFFIX)
        if branch_id == name or not is_valid_identifier(branch_id):
            continue
        handle = branch_handle(writer, directory, name)
        if handle is None:
            continue
        size = writer.ops.fstat(handle.fd).st_size
        if size:
            path = f"{directory}/{name}"
            check_leftover(writer.ops, handle.fd, path, session_id, branch_id, size)


def check_leftover(
    ops: FileOps, fd: int, path: str, session_id: str, branch_id: str, size: int
) -> None:
    """Refuse an unnamed branch file that is more than a crash's leftover.

    :raises CorruptLog: naming the line that proves the file is not one.
    """
    found = leftover_problem(ops, fd, session_id, branch_id, size)
    if found is not None:
        line_number, reason = found
        raise CorruptLog(path, line_number, reason)


def leftover_problem(
    ops: FileOps, fd: int, session_id: str, branch_id: str, size: int
) -> tuple[int, str] | None:
    """``(line, reason)`` if ``fd[:size]`` is not one first write cut short or whole.

    ``None`` for a crash's leftover (or an empty file): its events were never
    acknowledged. An unreadable last line is a torn tail and ignored, as when
    a named branch is opened (:func:`eventstore.file._tail.open_tail`).
    """
    start, last = last_line(ops, fd, size)
    record = decode_line(last)
    if record is None:
        if start == 0:
            return None  # one torn line: a first write cut short
        start, last = last_line(ops, fd, start)
        record = decode_line(last)
        if record is None:
            return count_lines(ops, fd, start) + 1, "unreadable record before the last line"
    first = last if start == 0 else _first_line(ops, fd, size)
    head = record if start == 0 else decode_line(first)
    if head is None:
        return 1, "unreadable record"
    wrong = _foreign(head, session_id, branch_id)
    if wrong is not None:
        return 1, wrong
    wrong = _foreign(record, session_id, branch_id)
    if wrong is not None:
        return count_lines(ops, fd, start) + 1, wrong
    if head.sequence != 1:
        return 1, (
            f"starts at sequence {head.sequence} but no manifest names the branch: "
            "the branch manifest was lost"
        )
    end = max(batch_end(first), 1)
    mark = batch_end(last)
    if record.sequence < end and mark == end:
        return None  # the first write, cut short
    if record.sequence == end and not mark:
        return None  # the first write, whole
    if record.sequence < end:
        return count_lines(ops, fd, start) + 1, "a batch's lines disagree on where it ends"
    # The first write is lines 1..end (one record a line): the next began a later one.
    return end + 1, (
        f"written after the branch's first write (sequences 1..{end}), so a manifest "
        "named the branch once: the branch manifest was lost"
    )


def _first_line(ops: FileOps, fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = ops.pread(fd, min(_FIRST_LINE_STEP, size - len(data)), len(data))
        if not chunk:
            break
        cut = chunk.find(b"\n")
        if cut >= 0:
            return data + chunk[: cut + 1]
        data += chunk
    return data


def _foreign(record: EventRecord, session_id: str, branch_id: str) -> str | None:
    if record.session_id == session_id and record.branch_id == branch_id:
        return None
    return (
        f"record of {record.session_id}/{record.branch_id} in the file of {session_id}/{branch_id}"
    )
