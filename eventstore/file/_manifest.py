"""``<root>/<session>/branches.json``: the branch graph of one session.

The manifest records every branch's parent, fork point, creation time and merge
state (heads live in the branch files). It is replaced atomically: written to a
temporary file, synced, renamed over the old one, and the directory synced.

A merge appends to the target and then closes the source; to make the pair
atomic across a crash the manifest first records the merge as ``pending_merge``
(with the target's size before it). On the next open a finished merge is
confirmed, an unfinished one undone (see ``FileEventStore``).

Everything in it is input, checked like an argument before any of it names a
file (:func:`manifest_problems`): ids, parents (no cycle), fork points, merge
targets; the branch log's lines are applied first (:mod:`._branch_log`: forks
and closes append a line there instead of rewriting this file, and every
rewrite folds them in, recording the last in ``log_lines``). Each branch also
records ``known_head``, a head it durably reached
when the manifest was written, so a branch file deleted or cut short later is
reported as lost history rather than read as a branch that starts over.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import msgspec

from .._errors import CorruptLog
from .._ids import is_valid_identifier
from .._json import encode
from ._writer import DIRECTORY as _DIRECTORY
from ._writer import NOFOLLOW as _NOFOLLOW
from ._writer import FileOps

if TYPE_CHECKING:
    from ._branch_log import BranchLog

__all__ = (
    "MANIFEST",
    "BranchMeta",
    "Manifest",
    "PendingMerge",
    "decode_manifest",
    "manifest_problems",
    "open_session_dir",
    "Staged",
    "commit_manifest",
    "discard_manifest",
    "read_branches",
    "read_manifest",
    "stage_manifest",
    "write_manifest",
)

MANIFEST = "branches.json"

#: Positions, sizes and counts: a negative one is damage, refused when decoded.
Count = Annotated[int, msgspec.Meta(ge=0)]


class BranchMeta(msgspec.Struct, kw_only=True):
    """One branch as the manifest stores it (mutable: ``merged_into`` changes)."""

    branch_id: str
    parent_branch: str | None = None
    fork_sequence: Count = 0
    created_at: datetime
    merged_into: str | None = None
    #: When :meth:`~eventstore.EventStore.close_branch` closed it.
    closed_at: datetime | None = None
    #: A head the branch had reached, durably, when the manifest was written: its
    #: file must hold at least this much, or history was lost (0: nothing known).
    known_head: Count = 0


class PendingMerge(msgspec.Struct, frozen=True, kw_only=True):
    """A merge whose append to the target may or may not have reached the disk."""

    source: str
    target: str
    target_head: Count
    target_size: Count
    count: Count


class Manifest(msgspec.Struct, kw_only=True):
    """The whole file; unknown fields are ignored so newer versions stay readable."""

    format: int = 1
    session_id: str
    branches: list[BranchMeta] = msgspec.field(default_factory=list)
    pending_merge: PendingMerge | None = None
    #: Branches deleted whose files may still be there (a crash struck before
    #: their removal): the next open removes them, then writes this empty.
    deleted: list[str] = msgspec.field(default_factory=list)
    #: The last line of the branch log (:mod:`._branch_log`) folded into this file.
    log_lines: Count = 0


_decoder = msgspec.json.Decoder(Manifest)


def open_session_dir(ops: FileOps, directory: str) -> int | None:
    """A descriptor of the session's directory, ``None`` if there is none.

    :raises CorruptLog: if the name is a symbolic link or not a directory: the
        store never follows a link out of its root.
    """
    try:
        return ops.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        kind = "not a directory"
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.lstat(directory).st_mode):
                kind = f"a symbolic link to {os.readlink(directory)!r}"
        raise CorruptLog(
            directory, 0, f"the session directory is {kind}; the store follows no links"
        ) from exc


def read_manifest(ops: FileOps, directory: str, session_id: str) -> Manifest | None:
    """The session's manifest, its branch log applied; ``None`` if the session has none.

    Everything in it is input: ids, parents, fork points and the pending merge
    are checked here (:func:`manifest_problems`) before any of them names a file.

    :raises CorruptLog: if the file exists but is not a valid manifest of this
        session, the branch log is damaged or there without a manifest, or the
        session directory, the manifest or the log is a symbolic link.
    """
    return read_branches(ops, directory, session_id)[0]


def read_branches(
    ops: FileOps, directory: str, session_id: str
) -> tuple[Manifest | None, BranchLog | None]:
    """:func:`read_manifest`, and what the branch log holds (``None`` if it is absent).

    :raises CorruptLog: as :func:`read_manifest`.
    """
    # The log's lines name this module's types: imported here, not at the top.
    from ._branch_log import BRANCH_LOG, apply_log, read_log

    path = f"{directory}/{MANIFEST}"
    log_path = f"{directory}/{BRANCH_LOG}"
    dir_fd = open_session_dir(ops, directory)
    if dir_fd is None:
        return None, None
    try:
        data = read_whole(ops, dir_fd, MANIFEST, path, "the manifest")
        log = read_log(ops, dir_fd, log_path)
    finally:
        ops.close(dir_fd)
    if data is None:
        if log is not None and (log.entries or log.torn):
            raise CorruptLog(log_path, 1, f"a branch log but no {MANIFEST}: the manifest was lost")
        return None, None
    manifest = decode_manifest(data, path)
    if manifest.session_id != session_id:
        raise CorruptLog(path, 1, f"manifest of session {manifest.session_id!r}")
    if log is not None:
        apply_log(manifest, log, log_path)
    problems = manifest_problems(manifest)
    if problems:
        where = log_path if log is not None and log.lines else path
        raise CorruptLog(where, 1, problems[0])
    return manifest, log


def read_whole(ops: FileOps, dir_fd: int, name: str, path: str, what: str) -> bytes | None:
    """The bytes of ``name`` in ``dir_fd`` (``None`` if it does not exist).

    :raises CorruptLog: naming ``path`` if it is a symbolic link (``what`` says
        which file, e.g. "the manifest").
    """
    try:
        fd = ops.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        reason = f"{what} is a symbolic link; the store follows no links"
        raise CorruptLog(path, 0, reason) from exc
    try:
        chunks = []
        offset = 0
        while chunk := ops.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
    finally:
        ops.close(fd)
    return b"".join(chunks)


def decode_manifest(data: bytes, path: str) -> Manifest:
    """Parse a manifest's bytes (types and ranges only; see :func:`manifest_problems`).

    :raises CorruptLog: if they are not a manifest; the reason names the field.
    """
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptLog(path, 1, f"unreadable branch manifest: {exc}") from exc


def manifest_problems(manifest: Manifest) -> list[str]:
    """Everything wrong with a decoded manifest's branch graph, first found first.

    Ids must be valid identifiers (they name files), listed once; parents and
    merge targets must be listed; a root forks at 0; following parents must end
    at a root (a cycle would make every read walk it forever).
    """
    problems: list[str] = []
    graph: dict[str, BranchMeta] = {}
    for meta in manifest.branches:
        if not is_valid_identifier(meta.branch_id):
            problems.append(f"branch id {meta.branch_id!r} is not a valid identifier")
        elif meta.branch_id in graph:
            problems.append(f"branch {meta.branch_id!r} is listed twice")
        else:
            graph[meta.branch_id] = meta
    for name, meta in graph.items():
        parent = meta.parent_branch
        if parent is None:
            if meta.fork_sequence:
                problems.append(f"{name!r} has no parent but fork point {meta.fork_sequence}")
        elif parent not in graph:
            problems.append(f"{name!r} forks from unknown branch {parent!r}")
        target = meta.merged_into
        if target is not None and (target not in graph or target == name):
            problems.append(f"{name!r} was merged into unknown branch {target!r}")
    problems.extend(_cycles(graph))
    problems.extend(
        f"deleted branch {name!r} is not a valid identifier or still listed"
        for name in manifest.deleted
        if not is_valid_identifier(name) or name in graph
    )
    pending = manifest.pending_merge
    if pending is not None:
        if not {pending.source, pending.target} <= graph.keys():
            problems.append("the pending merge names an unknown branch")
        elif pending.source == pending.target:
            problems.append(f"the pending merge merges {pending.source!r} into itself")
    return problems


def _cycles(graph: dict[str, BranchMeta]) -> list[str]:
    """One problem per parent cycle (each branch is walked once: O(branches))."""
    problems = []
    settled: set[str] = set()
    for name in graph:
        path: list[str] = []
        current: str | None = name
        while current is not None and current in graph and current not in settled:
            if current in path:
                loop = [*path[path.index(current) :], current]
                problems.append(f"parent cycle {' -> '.join(map(repr, loop))}")
                break
            path.append(current)
            current = graph[current].parent_branch
        settled.update(path)
    return problems


def write_manifest(
    ops: FileOps, root_fd: int, directory: str, manifest: Manifest, *, sync: bool
) -> None:
    """Replace the session's manifest atomically, creating its directory if needed."""
    staged = stage_manifest(ops, root_fd, directory, manifest, sync=sync)
    commit_manifest(ops, staged, sync=sync)


#: A manifest written to its temporary file: ``(directory fd, temporary name)``.
Staged = tuple[int, str]


def stage_manifest(
    ops: FileOps, root_fd: int, directory: str, manifest: Manifest, *, sync: bool
) -> Staged:
    """Write the manifest to a temporary file (synced if ``sync``), creating the directory.

    Pass the result to :func:`commit_manifest` or :func:`discard_manifest`.
    With ``sync=False`` the caller makes the directory and the file durable
    before the commit (one ``syncfs`` for many sessions).
    """
    name = directory.rpartition("/")[2]
    try:
        ops.mkdir(name, 0o700, dir_fd=root_fd)
    except FileExistsError:
        pass
    else:
        if sync:
            ops.fsync(root_fd)
    dir_fd = ops.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    temp = f".{MANIFEST}.{secrets.token_hex(6)}.tmp"
    try:
        fd = ops.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            data = encode(manifest) + b"\n"
            offset = 0
            while offset < len(data):
                offset += ops.pwrite(fd, data[offset:], offset)
            if sync:
                ops.fsync(fd)
        finally:
            ops.close(fd)
    except BaseException:
        discard_manifest(ops, (dir_fd, temp))
        raise
    return dir_fd, temp


def commit_manifest(ops: FileOps, staged: Staged, *, sync: bool) -> None:
    """Rename a staged manifest over the old one; sync the directory if ``sync``."""
    dir_fd, temp = staged
    try:
        ops.replace(temp, MANIFEST, dir_fd=dir_fd)
    except BaseException:
        discard_manifest(ops, staged)
        raise
    try:
        if sync:
            ops.fsync(dir_fd)
    finally:
        ops.close(dir_fd)


def discard_manifest(ops: FileOps, staged: Staged) -> None:
    """Remove a staged manifest's temporary file, if any, and let go of its directory."""
    dir_fd, temp = staged
    with contextlib.suppress(OSError):
        ops.unlink(temp, dir_fd=dir_fd)
    ops.close(dir_fd)
