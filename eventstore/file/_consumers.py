"""Consumer state under ``<root>/.consumers/``: one process's checkpoint, dead letters, lease.

Layout (the directory's name is no valid session id, so it never shows as one)::

    <root>/.consumers/<name>.json        {"position": N, "updated_at": ...}, replaced
                                         atomically (temp file, fsync, rename, dir fsync)
    <root>/.consumers/<name>.dead.jsonl  one DeadLetter a line, appended and fsynced;
                                         the last line for a position wins
    <root>/.consumers/<name>.lease       flock'ed by the holder, who writes its id in it

The lease is an exclusive ``flock`` on the lease file, held from :meth:`acquire`
to :meth:`release`: the kernel drops it when the holder's process dies (even by
SIGKILL), so it lapses at once rather than ``lease_seconds`` later, and needs no
renewal. It is a lock of this machine, as the store's writer lock is.

A ``read_only=True`` store writes here too (consumers may run beside the writer
process): the root must be writable by the consumer's process for the directory
to be created. Every blocking call runs in a worker thread, one at a time per
consumer (an asyncio lock), so the loop never waits on an fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import msgspec

from .._consumers import ConsumerInfo, ConsumerState, DeadLetter
from .._errors import StorageError
from .._ids import is_valid_identifier
from .._records import utc_now

__all__ = ("CONSUMERS_DIR", "FileConsumerState", "list_consumers")

CONSUMERS_DIR = ".consumers"
_STATE = ".json"
_DEAD = ".dead.jsonl"
_LEASE = ".lease"

T = TypeVar("T")


class _Checkpoint(msgspec.Struct):
    position: int
    updated_at: datetime


class _Holder(msgspec.Struct):
    holder: str
    pid: int
    since: datetime


_encode = msgspec.json.Encoder().encode
_decode_checkpoint = msgspec.json.Decoder(_Checkpoint).decode
_decode_letter = msgspec.json.Decoder(DeadLetter).decode
_decode_holder = msgspec.json.Decoder(_Holder).decode


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: str, data: bytes, *, sync: bool) -> None:
    """Write ``path`` whole or not at all: temp file, fsync, rename, directory fsync."""
    temp = f"{path}.tmp"
    with open(temp, "wb") as f:
        f.write(data)
        if sync:
            os.fsync(f.fileno())
    os.replace(temp, path)
    if sync:
        _fsync_dir(os.path.dirname(path))


class FileConsumerState(ConsumerState):
    """The state of one consumer under ``<root>/.consumers/``.

    :param sync: fsync every write (the store's ``durability="fsync"``).
    """

    def __init__(self, root: str, name: str, *, sync: bool) -> None:
        super().__init__(name)
        self._dir = os.path.join(root, CONSUMERS_DIR)
        self._base = os.path.join(self._dir, name)
        self._sync = sync
        self._io = asyncio.Lock()
        self._lease_fd: int | None = None
        self._holder: str | None = None

    async def _run(self, call: Callable[[], T]) -> T:
        async with self._io:
            try:
                return await asyncio.to_thread(call)
            except OSError as exc:
                raise StorageError(
                    f"consumer {self.name!r}: {exc.strerror or exc}", exc.errno
                ) from exc

    def _made(self) -> None:
        if not os.path.isdir(self._dir):
            os.makedirs(self._dir, exist_ok=True)
            if self._sync:
                _fsync_dir(os.path.dirname(self._dir))

    async def position(self) -> int:
        return await self._run(self._read_position)

    def _read_position(self) -> int:
        try:
            with open(self._base + _STATE, "rb") as f:
                return _decode_checkpoint(f.read()).position
        except FileNotFoundError:
            return 0
        except msgspec.DecodeError as exc:
            raise OSError(f"{self._base}{_STATE} is damaged: {exc}") from exc

    async def save_position(self, position: int) -> None:
        data = _encode(_Checkpoint(position, utc_now()))
        await self._run(lambda: self._write_position(data))

    def _write_position(self, data: bytes) -> None:
        self._made()
        _replace(self._base + _STATE, data, sync=self._sync)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._run(lambda: self._append_letter(_encode(letter) + b"\n"))

    def _append_letter(self, line: bytes) -> None:
        self._made()
        with open(self._base + _DEAD, "ab") as f:
            f.write(line)
            if self._sync:
                os.fsync(f.fileno())

    async def dead_letters(self) -> list[DeadLetter]:
        return await self._run(self._read_letters)

    def _read_letters(self) -> list[DeadLetter]:
        found: dict[int, DeadLetter] = {}
        try:
            with open(self._base + _DEAD, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                letter = _decode_letter(line)
            except msgspec.DecodeError:
                continue  # a line torn by a crash mid-append: its record is redelivered
            found[letter.position] = letter
        return [found[p] for p in sorted(found)]

    async def remove_dead_letters(self, positions: set[int]) -> None:
        if positions:
            await self._run(lambda: self._rewrite_letters(positions))

    def _rewrite_letters(self, positions: set[int]) -> None:
        kept = [letter for letter in self._read_letters() if letter.position not in positions]
        _replace(self._base + _DEAD, b"".join(_encode(x) + b"\n" for x in kept), sync=self._sync)

    async def acquire(self, holder: str, lease_seconds: float) -> bool:
        if self._lease_fd is not None:
            return self._holder == holder
        fd = await self._run(self._lock)
        if fd is None:
            return False
        self._lease_fd, self._holder = fd, holder
        data = _encode(_Holder(holder, os.getpid(), utc_now()))
        await self._run(lambda: _write_holder(fd, data))
        return True

    def _lock(self) -> int | None:
        self._made()
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self._base + _LEASE, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    async def release(self, holder: str) -> None:
        if self._lease_fd is None or self._holder != holder:
            return
        fd, self._lease_fd, self._holder = self._lease_fd, None, None
        await self._run(lambda: _unlock(fd))

    def close(self) -> None:
        """Drop a lease still held (the store is closing)."""
        if self._lease_fd is not None:
            fd, self._lease_fd, self._holder = self._lease_fd, None, None
            _unlock(fd)

    async def info(self) -> ConsumerInfo:
        return await self._run(self._info)

    def _info(self) -> ConsumerInfo:
        return ConsumerInfo(
            self.name, self._read_position(), len(self._read_letters()), self._lease_holder()
        )

    def _lease_holder(self) -> str | None:
        if self._lease_fd is not None:
            return self._holder
        try:
            fd = os.open(self._base + _LEASE, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                with contextlib.suppress(msgspec.DecodeError):
                    return _decode_holder(os.pread(fd, 4096, 0)).holder
                return "?"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def _write_holder(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def list_consumers(root: str) -> list[str]:
    """Names of the consumers with state under ``root``, sorted."""
    try:
        names = os.listdir(os.path.join(root, CONSUMERS_DIR))
    except FileNotFoundError:
        return []
    found = set()
    for name in names:
        for suffix in (_STATE, _DEAD, _LEASE):
            stem = name.removesuffix(suffix)
            if stem != name and is_valid_identifier(stem):
                found.add(stem)
    return sorted(found)
