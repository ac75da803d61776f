"""``<root>/<session>/branches.json``: the branch graph of one session.

The manifest records every branch's parent, fork point, creation time and merge
state (heads live in the branch files). It is replaced atomically: written to a
temporary file, synced, renamed over the old one, and the directory synced.

A merge appends to the target and then closes the source; to make the pair
atomic across a crash the manifest first records the merge as ``pending_merge``
(with the target's size before it). On the next open a finished merge is
confirmed, an unfinished one undone (see ``FileEventStore``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from datetime import datetime

import msgspec

from ._errors import CorruptLog
from ._file_writer import FileOps

__all__ = ("BranchMeta", "Manifest", "PendingMerge", "read_manifest", "write_manifest")

MANIFEST = "branches.json"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class BranchMeta(msgspec.Struct, kw_only=True):
    """One branch as the manifest stores it (mutable: ``merged_into`` changes)."""

    branch_id: str
    parent_branch: str | None = None
    fork_sequence: int = 0
    created_at: datetime
    merged_into: str | None = None


class PendingMerge(msgspec.Struct, frozen=True, kw_only=True):
    """A merge whose append to the target may or may not have reached the disk."""

    source: str
    target: str
    target_head: int
    target_size: int
    count: int


class Manifest(msgspec.Struct, kw_only=True):
    """The whole file; unknown fields are ignored so newer versions stay readable."""

    format: int = 1
    session_id: str
    branches: list[BranchMeta] = msgspec.field(default_factory=list)
    pending_merge: PendingMerge | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Manifest)


def read_manifest(ops: FileOps, directory: str, session_id: str) -> Manifest | None:
    """The session's manifest, or ``None`` if the session has none.

    :raises CorruptLog: if the file exists but is not a manifest of this session.
    """
    path = f"{directory}/{MANIFEST}"
    try:
        dir_fd = ops.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        fd = ops.open(MANIFEST, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    finally:
        ops.close(dir_fd)
    try:
        chunks = []
        offset = 0
        while chunk := ops.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
    finally:
        ops.close(fd)
    data = b"".join(chunks)
    try:
        manifest = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptLog(path, 1, f"unreadable branch manifest: {exc}") from exc
    if manifest.session_id != session_id:
        raise CorruptLog(path, 1, f"manifest of session {manifest.session_id!r}")
    names = [meta.branch_id for meta in manifest.branches]
    if len(set(names)) != len(names):
        raise CorruptLog(path, 1, "a branch is listed twice")
    for meta in manifest.branches:
        if meta.parent_branch is not None and meta.parent_branch not in names:
            raise CorruptLog(path, 1, f"branch {meta.branch_id!r} has an unknown parent")
    pending = manifest.pending_merge
    if pending is not None and not {pending.source, pending.target} <= set(names):
        raise CorruptLog(path, 1, "the pending merge names an unknown branch")
    return manifest


def write_manifest(
    ops: FileOps, root_fd: int, directory: str, manifest: Manifest, *, sync: bool
) -> None:
    """Replace the session's manifest atomically, creating its directory if needed."""
    name = directory.rpartition("/")[2]
    try:
        ops.mkdir(name, 0o700, dir_fd=root_fd)
    except FileExistsError:
        pass
    else:
        if sync:
            ops.fsync(root_fd)
    dir_fd = ops.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    try:
        temp = f".{MANIFEST}.{secrets.token_hex(6)}.tmp"
        fd = ops.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            try:
                data = _encoder.encode(manifest) + b"\n"
                offset = 0
                while offset < len(data):
                    offset += ops.pwrite(fd, data[offset:], offset)
                if sync:
                    ops.fsync(fd)
            finally:
                ops.close(fd)
            ops.replace(temp, MANIFEST, dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                ops.unlink(temp, dir_fd=dir_fd)
            raise
        if sync:
            ops.fsync(dir_fd)
    finally:
        ops.close(dir_fd)
