"""``<root>/<session>/branches.log``: the branch graph's changes since ``branches.json``.

Rewriting the whole manifest for every fork costs O(branches) bytes and two
syncs (the file, then its directory after the rename); a session forked at
every step of an agent's run grows to thousands of branches. So in a session
of :data:`LOG_FROM` branches or more a fork, and a ``close_branch``, appends
one line to the branch log instead, and syncs that file alone. Every other
change (a new session, a merge, a delete) rewrites the manifest as before,
folding the log in; so does a fork once the log holds as many lines as the
manifest file names branches (at least :data:`COMPACT_AFTER`), which keeps
each fork O(1) amortized.

Format: one JSON object a line, ``{"n": <line number>, "branch": <BranchMeta>}``.
``n`` counts the session's log lines from 1 and never restarts; the manifest
records in ``log_lines`` the last ``n`` it folded in. Reading a session applies
the lines after it, in order: a line naming a new branch adds it, one naming a
known branch replaces its entry (same parent, same fork point: a close). Lines
at or below ``log_lines`` were folded in already (a crash struck between the
manifest's rename and the log's truncation) and are skipped.

Crash safety: a fork returns once its line is synced. The last line may be
torn by a kill (no newline, or not a line at all): it was never acknowledged,
readers ignore it and a writer cuts it off when it loads the session, as for
the event logs. Anything else wrong is damage (:class:`CorruptLog` naming the
line): a line out of order or repeated, a branch that changes its parent or
fork point, and whatever the manifest's own rules refuse once the lines are
applied (unknown parents, cycles, bad ids: :func:`manifest_problems`). A log
without a manifest means the manifest was lost: refused too.

A root without this file (written before it existed) opens as before: the
manifest's ``log_lines`` defaults to 0. An older version of the store ignores
the log and would not see branches that only the log names.
"""

from __future__ import annotations

import errno
import os
from typing import Annotated

import msgspec

from .._errors import CorruptLog
from .._json import encode
from ._manifest import BranchMeta, Manifest, read_whole
from ._tail import set_aside
from ._writer import DIRECTORY, NOFOLLOW, FileOps, Writer

__all__ = (
    "BRANCH_LOG",
    "COMPACT_AFTER",
    "LOG_FROM",
    "BranchLog",
    "LogLine",
    "append_log",
    "apply_log",
    "cut_log",
    "log_line",
    "read_log",
)

BRANCH_LOG = "branches.log"

#: The log is folded into the manifest once it holds this many lines, or as
#: many as the manifest file names branches if that is more.
COMPACT_AFTER = 64
#: Sessions with fewer branches rewrite the manifest, as before the log: it is
#: small, and such a session stays readable by a version without the log.
LOG_FROM = 16


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the branch log: the ``n``-th change, a branch's whole new entry."""

    n: Annotated[int, msgspec.Meta(ge=1)]
    branch: BranchMeta


class BranchLog(msgspec.Struct, kw_only=True):
    """What a session's branch log holds, as read.

    ``size`` is where its whole lines end (the next line goes there), ``lines``
    how many of them the manifest has not folded in, ``last`` the highest
    ``n`` read or folded, ``torn`` whether bytes past ``size`` are a torn line.
    """

    size: int = 0
    lines: int = 0
    last: int = 0
    torn: bool = False
    entries: list[LogLine] = msgspec.field(default_factory=list)


_decoder = msgspec.json.Decoder(LogLine)


def log_line(n: int, meta: BranchMeta) -> bytes:
    """The bytes of the ``n``-th line, naming ``meta``."""
    return encode(LogLine(n=n, branch=meta)) + b"\n"


def read_log(ops: FileOps, dir_fd: int, path: str) -> BranchLog | None:
    """Parse the session's branch log (``None`` if there is none).

    A last line without its newline, or unparseable, is a torn tail
    (``torn``, not in ``entries``).

    :raises CorruptLog: for an unparseable line before the last, or if the
        log is a symbolic link.
    """
    data = read_whole(ops, dir_fd, BRANCH_LOG, path, "the branch log")
    if data is None:
        return None
    log = BranchLog()
    lines = data.split(b"\n")
    # The piece after the last newline: empty, or a torn line.
    log.torn = bool(lines.pop())
    for number, line in enumerate(lines, start=1):
        try:
            log.entries.append(_decoder.decode(line))
        except msgspec.DecodeError as exc:
            if number < len(lines):
                raise CorruptLog(path, number, f"unreadable branch log line: {exc}") from exc
            log.torn = True  # the last line: a write a kill cut short
            break
        log.size += len(line) + 1
    return log


def apply_log(manifest: Manifest, log: BranchLog, path: str) -> None:
    """Apply the log's lines after the manifest's ``log_lines`` to ``manifest``.

    Sets ``log.lines`` (lines not folded in) and ``log.last``. The caller then
    checks the result with :func:`~._manifest.manifest_problems`.

    :raises CorruptLog: for a line out of order or repeated, or one that
        changes a branch's parent or fork point.
    """
    expected = manifest.log_lines + 1
    known = {meta.branch_id: n for n, meta in enumerate(manifest.branches)}
    log.lines = 0
    for number, entry in enumerate(log.entries, start=1):
        if entry.n < expected and not log.lines:
            continue  # folded into the manifest already
        if entry.n != expected:
            raise CorruptLog(path, number, f"branch log line {entry.n}, expected {expected}")
        meta = entry.branch
        at = known.get(meta.branch_id)
        if at is None:
            known[meta.branch_id] = len(manifest.branches)
            manifest.branches.append(meta)
        else:
            old = manifest.branches[at]
            if (old.parent_branch, old.fork_sequence) != (meta.parent_branch, meta.fork_sequence):
                raise CorruptLog(
                    path,
                    number,
                    f"branch {meta.branch_id!r} changes its fork point from "
                    f"{old.parent_branch!r}@{old.fork_sequence} to "
                    f"{meta.parent_branch!r}@{meta.fork_sequence}",
                )
            manifest.branches[at] = meta
        log.lines += 1
        expected += 1
    log.last = expected - 1


def append_log(
    writer: Writer,
    directory: str,
    offset: int,
    data: bytes,
    fresh: list[str],
    *,
    sync: bool,
) -> None:
    """Write one line at ``offset`` of the session's branch log, synced if ``sync``.

    ``fresh`` are branch files the line names for the first time: a crash's
    leftover among them goes aside first (:func:`~._tail.set_aside`). A failed
    write or sync is cut back to ``offset`` before the error goes on.

    :raises OSError: if the write or a sync fails.
    :raises CorruptLog: if a fresh branch's file holds acknowledged events.
    """
    for name in fresh:
        set_aside(writer, directory, name, sync=sync)
    ops = writer.ops
    dir_fd = ops.open(directory, os.O_RDONLY | DIRECTORY | NOFOLLOW)
    try:
        created = False
        try:
            fd = ops.open(BRANCH_LOG, os.O_WRONLY | NOFOLLOW, dir_fd=dir_fd)
        except FileNotFoundError:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW
            fd = ops.open(BRANCH_LOG, flags, 0o600, dir_fd=dir_fd)
            created = True
        try:
            _write_at(ops, fd, data, offset)
            if sync:
                writer.syncs += 1
                ops.fsync(fd)
                if created:
                    ops.fsync(dir_fd)
        except OSError:
            # No partial line may stay for the next line to be written after.
            ops.ftruncate(fd, offset)
            if sync:
                ops.fsync(fd)
            raise
        finally:
            ops.close(fd)
    finally:
        ops.close(dir_fd)


def _write_at(ops: FileOps, fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = ops.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]
        offset += written


def cut_log(ops: FileOps, directory: str, size: int, *, sync: bool) -> None:
    """Cut the session's branch log to ``size`` bytes (a torn line, or lines folded in)."""
    dir_fd = ops.open(directory, os.O_RDONLY | DIRECTORY | NOFOLLOW)
    try:
        try:
            fd = ops.open(BRANCH_LOG, os.O_WRONLY | NOFOLLOW, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        try:
            ops.ftruncate(fd, size)
            if sync:
                ops.fsync(fd)
        finally:
            ops.close(fd)
    finally:
        ops.close(dir_fd)
