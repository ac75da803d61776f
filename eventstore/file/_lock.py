"""One writer per root: an exclusive ``flock`` on ``<root>/.lock`` for the store's life.

``flock`` locks belong to an open file description, so a second store in the
same process (which opens its own descriptor) is refused exactly like another
process, and the kernel drops the lock when the process dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import os

from .._errors import StorageError, StoreLocked

__all__ = ("acquire_lock", "release_lock")

LOCK_NAME = ".lock"


def acquire_lock(root: str) -> int:
    """Open and lock ``<root>/.lock``; return its descriptor.

    :raises StoreLocked: if another store holds it.
    :raises StorageError: if the lock file cannot be opened.
    """
    path = os.path.join(root, LOCK_NAME)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc.strerror}", exc.errno) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLocked(path) from None
    except OSError as exc:
        os.close(fd)
        raise StorageError(f"cannot lock {path}: {exc.strerror}", exc.errno) from exc
    return fd


def release_lock(fd: int) -> None:
    """Unlock and close the descriptor from :func:`acquire_lock`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
