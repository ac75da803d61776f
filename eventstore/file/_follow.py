"""Waking a read-only store when the writer process appends to the feed index.

Linux: ``inotify`` (through ctypes) on the index file, read from the event
loop with ``add_reader``: a wake-up within a millisecond of the writer's
``pwrite``. Elsewhere, or when inotify is unavailable (no file yet, watches
exhausted): a poll of the file's size and mtime every :data:`POLL_INTERVAL`
seconds. Either way :meth:`Watcher.wait` also returns after its timeout, so a
lost event costs a delay, never a stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import sys

__all__ = ("POLL_INTERVAL", "Watcher")

#: Seconds between two looks at the index when inotify is not used.
POLL_INTERVAL = 0.01
#: Longest wait even with inotify (a safety net against a missed event).
_SAFETY = 0.25
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVE_SELF = 0x800
_IN_DELETE_SELF = 0x400
_MASK = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVE_SELF | _IN_DELETE_SELF


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


_libc = _load_libc()


class Watcher:
    """Waits for the file at ``path`` to change (see the module docstring).

    :param use_inotify: ``False`` forces polling (tests of the fallback).
    """

    def __init__(self, path: str, *, use_inotify: bool = True) -> None:
        self.path = path
        self._use_inotify = use_inotify and _libc is not None
        self._fd: int | None = None
        self._event = asyncio.Event()
        self._stamp: tuple[int, int] | None = self._look()

    @property
    def inotify(self) -> bool:
        """Whether changes arrive by inotify (else by polling)."""
        return self._fd is not None

    def _look(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_size, found.st_mtime_ns

    def _watch(self) -> None:
        """Start inotify on the file, once it exists."""
        if self._fd is not None or not self._use_inotify or _libc is None:
            return
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            self._use_inotify = False
            return
        if _libc.inotify_add_watch(fd, os.fsencode(self.path), _MASK) < 0:
            os.close(fd)
            return  # no file yet: polled until it appears
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._ready)

    def _ready(self) -> None:
        assert self._fd is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._fd, 65536):
                pass
        self._event.set()

    async def wait(self, timeout: float | None) -> None:  # noqa: ASYNC109 - a poll interval
        """Return once the file changed, or after ``timeout`` seconds (``None``: no limit)."""
        self._watch()
        if self._fd is not None:
            limit = _SAFETY if timeout is None else min(timeout, _SAFETY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), limit)
            self._event.clear()
            return
        waited = 0.0
        while timeout is None or waited < timeout:
            step = POLL_INTERVAL if timeout is None else min(POLL_INTERVAL, timeout - waited)
            await asyncio.sleep(step)
            waited += step
            stamp = self._look()
            if stamp != self._stamp:
                self._stamp = stamp
                return

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
