"""Erasing a session or a branch from disk, crash-safe; runs on the I/O thread.

A session is deleted in one atomic step: its directory is renamed to a hidden
tombstone (``<root>/.deleted.<session_id>.<token>``, never a valid session id,
so nothing lists or opens it) and the root is synced. Only then are its files
unlinked. A crash before the rename leaves the session whole; after it, the
session is gone and the next writer to open the root removes what is left of
the tombstone (:func:`clear_tombstones`).

A copied session (``copy_session``) is written under a hidden
``<root>/.copying.<session_id>.<token>`` and renamed into place; what a crash
leaves of one is removed on open too (:func:`clear_copies`).

A deleted branch is first dropped from the manifest, which records its name in
``deleted`` until its files are unlinked; a session load finishes that removal
(:func:`remove_branch_files`) should a crash strike in between.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat

from ._tail import TORN_SUFFIX
from ._writer import DIRECTORY as _DIRECTORY
from ._writer import NOFOLLOW as _NOFOLLOW
from ._writer import FileOps

__all__ = (
    "COPY_PREFIX",
    "TOMBSTONE_PREFIX",
    "bury",
    "clear_copies",
    "clear_tombstones",
    "remove_branch_files",
    "remove_tree",
)

#: Names under the root that start with this are deleted sessions' remains.
TOMBSTONE_PREFIX = ".deleted."
#: A session being copied is written under this name, then renamed to its own.
COPY_PREFIX = ".copying."


def bury(ops: FileOps, root_fd: int, session_id: str, *, sync: bool) -> bool:
    """Delete a session directory: rename it to a tombstone, sync, then remove it.

    :returns: whether there was a directory.
    :raises OSError: if the rename or the sync failed (the session is then whole,
        or gone if the rename reached the disk), or the removal failed (gone; the
        next open finishes it).
    """
    tombstone = f"{TOMBSTONE_PREFIX}{session_id}.{secrets.token_hex(6)}"
    try:
        ops.rename(session_id, tombstone, dir_fd=root_fd)
    except FileNotFoundError:
        return False
    if sync:
        ops.fsync(root_fd)
    _remove_tree(ops, root_fd, tombstone)
    return True


def clear_tombstones(ops: FileOps, root_fd: int) -> list[str]:
    """Remove what crashes left of deleted sessions (a writer calls this on open).

    :returns: the ids of those sessions (their feed streams are to be blanked too).
    """
    found: list[str] = []
    for name in os.listdir(root_fd):
        if name.startswith(TOMBSTONE_PREFIX):
            _remove_tree(ops, root_fd, name)
            found.append(name[len(TOMBSTONE_PREFIX) :].rpartition(".")[0])
    return found


def clear_copies(ops: FileOps, root_fd: int) -> None:
    """Remove copies a crash cut short before they were renamed into place (on open)."""
    for name in os.listdir(root_fd):
        if name.startswith(COPY_PREFIX):
            _remove_tree(ops, root_fd, name)


def remove_tree(ops: FileOps, parent_fd: int, name: str) -> None:
    """``rm -r parent/name`` without following links; absent is fine."""
    _remove_tree(ops, parent_fd, name)


def remove_branch_files(ops: FileOps, directory: str, names: list[str], *, sync: bool) -> None:
    """Unlink deleted branches' files and torn tails; absent ones are fine."""
    dir_fd = ops.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
    try:
        for name in names:
            for file in (f"{name}.jsonl", f"{name}.jsonl{TORN_SUFFIX}"):
                with contextlib.suppress(FileNotFoundError):
                    ops.unlink(file, dir_fd=dir_fd)
        if sync:
            ops.fsync(dir_fd)
    finally:
        ops.close(dir_fd)


def _remove_tree(ops: FileOps, parent_fd: int, name: str) -> None:
    """``rm -r parent/name`` without following links."""
    try:
        found = os.lstat(name, dir_fd=parent_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(found.st_mode):
        ops.unlink(name, dir_fd=parent_fd)
        return
    dir_fd = ops.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=parent_fd)
    try:
        for entry in os.listdir(dir_fd):
            _remove_tree(ops, dir_fd, entry)
    finally:
        ops.close(dir_fd)
    ops.rmdir(name, dir_fd=parent_fd)
