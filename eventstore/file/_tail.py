"""Opening a branch file: its head from the tail, and torn-tail recovery.

Runs on the I/O thread. A crash can leave the last line torn (no newline, or
bytes that are not a record): a writer cuts it off and appends it to
``<branch>.jsonl.torn`` so nothing is silently mixed into reads or lost from
sight; a read-only store just stops before it (the writer may be mid-write).
A batch cut short by a kill (its last complete line carries a ``batch_end``
beyond its own sequence, see :mod:`eventstore.file._batch`) goes the same way,
back to its first line. Anything wrong on the line before is real corruption:
:class:`CorruptLog`.

The head is the sequence of the last good line, so that line is checked
against the one before it (one ``pread`` more), and the lines a batch
recovery would cut must be consecutive records of the branch: damage that
merely looks like a torn write is reported, never cut, and nothing is cut
until every check has passed.
"""

from __future__ import annotations

import os

from .._codec import decode_line
from .._errors import CorruptLog
from .._ids import is_valid_identifier
from .._records import EventRecord
from ._batch import batch_end
from ._index import Owner, count_lines, last_line
from ._leftover import BRANCH_SUFFIX, branch_handle, check_leftover, leftover_problem
from ._manifest import MANIFEST
from ._writer import DIRECTORY as _DIRECTORY
from ._writer import NOFOLLOW as _NOFOLLOW
from ._writer import FileOps, Writer

__all__ = (
    "TORN_SUFFIX",
    "cut_back",
    "lost_events",
    "open_tail",
    "prepare_root",
    "set_aside",
    "set_aside_leftovers",
)

TORN_SUFFIX = ".torn"


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
    known_head: int = 0,
) -> tuple[int, int] | None:
    """``(head, good size)`` of a branch file, or ``None`` if ``known_size`` is still right.

    :param known_size: the good size already known (``-1``: none).
    :param repair: cut a torn last line off (writer) or just stop before it (reader).
    :param known_head: a head the manifest records the branch reached.
    :raises CorruptLog: if the last complete line is not this branch's record,
        or the file ends before ``known_head``.
    """
    handle = writer.handle(directory, name)
    if handle is None:
        _check_known(f"{directory}/{name}", fork_sequence, known_head)
        return fork_sequence, 0
    ops = writer.ops
    size = handle.size if repair else ops.fstat(handle.fd).st_size
    if size == known_size:
        return None
    path = f"{directory}/{name}"
    owner = Owner(session_id, branch_id, fork_sequence + 1)
    end = size
    found: tuple[EventRecord, bytes] | None = None
    if end > 0:
        start, line = last_line(ops, handle.fd, end)
        record = decode_line(line)
        if record is None:
            # A torn last line: whatever was cut short was never acknowledged.
            end = start
            found = _complete_line(ops, handle.fd, path, end)
        else:
            found = record, line
    if found is not None:
        stop = batch_end(found[1])
        if stop > found[0].sequence:
            start = end - len(found[1])
            end, first = _batch_start(ops, handle.fd, path, owner, start, found[0], stop)
            found = _complete_line(ops, handle.fd, path, end)
            follows = owner.sequence if found is None else found[0].sequence + 1
            if first != follows:
                raise CorruptLog(
                    path,
                    count_lines(ops, handle.fd, end) + 1,
                    f"a batch cut short starts at #{first}, expected #{follows}",
                )
    # Checked before anything is cut: a damaged file is reported, never repaired.
    if found is not None:
        _check_last(ops, handle.fd, path, owner, found[0], end - len(found[1]))
    _check_known(path, fork_sequence if found is None else found[0].sequence, known_head)
    if repair and end < size:
        cut_back(writer, directory, name, end, sync=sync)
    return (fork_sequence, 0) if found is None else (found[0].sequence, end)


def _check_known(path: str, head: int, known_head: int) -> None:
    """A file that ends before a head the manifest recorded lost acknowledged events.

    :raises CorruptLog: then.
    """
    reason = lost_events(head, known_head)
    if reason is not None:
        raise CorruptLog(path, 0, reason)


def lost_events(head: int, known_head: int) -> str | None:
    """Why a branch file whose records end at ``head`` lost history, ``None`` if it did not."""
    if head >= known_head:
        return None
    return (
        f"holds sequences up to {head}, but {MANIFEST} records that the branch "
        f"reached {known_head}: acknowledged events are missing"
    )


def _check_last(
    ops: FileOps, fd: int, path: str, owner: Owner, record: EventRecord, start: int
) -> None:
    """Check that the last good line, at ``start``, gives the branch's true head.

    It must be an own record of ``owner``, one after the line before it (or
    ``owner.sequence`` on the first line). Reading one more line costs one
    ``pread`` on open; a damaged line further back fails the reads over it.

    :raises CorruptLog: naming the line that breaks this.
    """
    session_id, branch_id, first = owner
    expected = first
    if start > 0:
        before, line = last_line(ops, fd, start)
        previous = decode_line(line)
        if (
            previous is None
            or (previous.session_id, previous.branch_id) != (session_id, branch_id)
            or previous.sequence < first
        ):
            found = "no record" if previous is None else _name(previous)
            raise CorruptLog(
                path,
                count_lines(ops, fd, before) + 1,
                f"expected an own record of {session_id}/{branch_id} from #{first}, found {found}",
            )
        expected = previous.sequence + 1
    if not _holds(record, session_id, branch_id, expected):
        raise CorruptLog(
            path,
            count_lines(ops, fd, start) + 1,
            f"last record is {_name(record)}, expected {session_id}/{branch_id}#{expected}",
        )


def _holds(record: EventRecord | None, session_id: str, branch_id: str, sequence: int) -> bool:
    return record is not None and (record.session_id, record.branch_id, record.sequence) == (
        session_id,
        branch_id,
        sequence,
    )


def _name(record: EventRecord) -> str:
    return f"{record.session_id}/{record.branch_id}#{record.sequence}"


def _complete_line(ops: FileOps, fd: int, path: str, end: int) -> tuple[EventRecord, bytes] | None:
    """The record on the line ending at ``end`` (``None`` at 0), which must be whole.

    :raises CorruptLog: if that line is not a record.
    """
    if end == 0:
        return None
    start, line = last_line(ops, fd, end)
    record = decode_line(line)
    if record is None:
        line_number = count_lines(ops, fd, start) + 1
        raise CorruptLog(path, line_number, "unreadable record before the last line")
    return record, line


def _batch_start(
    ops: FileOps, fd: int, path: str, owner: Owner, start: int, last: EventRecord, stop: int
) -> tuple[int, int]:
    """Where the batch ending at ``stop`` begins, and its first sequence.

    Walks back from its last complete line, ``last`` at ``start``; only on
    recovery. The batch's lines all carry the same ``batch_end``, and what a
    kill leaves of them are consecutive records of the branch: anything else
    is damage, which is reported rather than cut.

    :raises CorruptLog: for a line of the batch that is not the record due there.
    """
    session_id, branch_id, _ = owner
    record: EventRecord | None = last
    sequence = last.sequence
    while True:
        if not _holds(record, session_id, branch_id, sequence):
            found = "no record" if record is None else _name(record)
            raise CorruptLog(
                path,
                count_lines(ops, fd, start) + 1,
                f"a batch cut short holds {found} where {session_id}/{branch_id}#{sequence} "
                "belongs",
            )
        if start == 0:
            return start, sequence
        before, line = last_line(ops, fd, start)
        if batch_end(line) != stop:
            return start, sequence
        record = decode_line(line)
        start, sequence = before, sequence - 1


def cut_back(writer: Writer, directory: str, name: str, size: int, *, sync: bool) -> None:
    """Move the bytes of ``directory/name`` past ``size`` to its ``.torn`` file.

    A missing file is already cut back to 0: a merge into a branch without a
    file may die before its write creates one.

    :raises CorruptLog: if the file is missing although ``size`` bytes were good.
    """
    handle = writer.handle(directory, name)
    if handle is None:
        if size:
            raise CorruptLog(f"{directory}/{name}", 0, f"missing, but it held {size} bytes")
        return
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

    Creates the session directory if needed, else sets aside any leftover file
    (:func:`set_aside`): a directory made just now holds none.
    """
    ops = writer.ops
    try:
        ops.mkdir(directory.rpartition("/")[2], 0o700, dir_fd=root_fd)
    except FileExistsError:
        set_aside(writer, directory, name, sync=sync)
    else:
        if sync:
            ops.fsync(root_fd)


def set_aside(writer: Writer, directory: str, name: str, *, sync: bool) -> None:
    """Move the content of a branch file the manifest does not name yet to ``.torn``.

    Such a file is an orphan: a crash (or a close) struck after a new branch's
    first write and before the manifest named it, so none of it was
    acknowledged. Called before the manifest names the branch, so the orphan
    can never become part of it.

    :raises CorruptLog: if the file holds more than such a first write: its
        events were acknowledged, and the manifest that named them was lost.
    """
    handle = branch_handle(writer, directory, name)
    if handle is None:
        return
    size = writer.ops.fstat(handle.fd).st_size
    if size > 0:
        session_id = directory.rpartition("/")[2]
        branch_id = name.removesuffix(BRANCH_SUFFIX)
        path = f"{directory}/{name}"
        check_leftover(writer.ops, handle.fd, path, session_id, branch_id, size)
        cut_back(writer, directory, name, 0, sync=sync)


def set_aside_leftovers(writer: Writer, directory: str, named: set[str], *, sync: bool) -> None:
    """Move each crash's leftover among the files ``named`` leaves out to its ``.torn`` file.

    A writer calls this when it loads a session, so a first write cut off before
    its manifest entry goes aside then rather than when its branch is next
    created. An unnamed file holding more than that is left alone: ``verify``
    reports it, and :func:`set_aside` refuses to start a branch over it.
    """
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    session_id = directory.rpartition("/")[2]
    for name in names:
        branch_id = name.removesuffix(BRANCH_SUFFIX)
        if branch_id == name or branch_id in named or not is_valid_identifier(branch_id):
            continue
        handle = branch_handle(writer, directory, name)
        if handle is None:
            continue
        size = writer.ops.fstat(handle.fd).st_size
        if size and leftover_problem(writer.ops, handle.fd, session_id, branch_id, size) is None:
            cut_back(writer, directory, name, 0, sync=sync)
