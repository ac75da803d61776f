"""The physical limit: what the disk and the decoder allow with no store at all.

Same bytes as the JSONL store writes (each record encoded plus a newline),
written by a plain ``os.write`` loop into an ``O_APPEND`` file, and read back
with one ``read`` + ``msgspec`` ``decode_lines``. A store cannot beat these
in the same configuration; how close it gets is the engineering headroom.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from eventstore import EventRecord

from ._harness import chunks

__all__ = ("read_decode", "write_lines", "write_rounds")

_decode_lines = msgspec.json.Decoder(EventRecord).decode_lines


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        syncfs: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
        return syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def write_lines(path: Path, lines: list[bytes], *, fsync: bool, per: int = 1) -> float:
    """Seconds to write ``lines`` ``per`` at a time, fsyncing each write if asked."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    fd = os.open(path, flags, 0o644)
    try:
        groups = [b"".join(group) for group in chunks(lines, per)] if per > 1 else lines
        start = time.perf_counter()
        for data in groups:
            os.write(fd, data)
            if fsync:
                os.fsync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)


def write_rounds(directory: Path, files: int, rounds: int, line: bytes) -> float:
    """Seconds for ``rounds`` rounds of one line into each of ``files`` logs, one sync per round.

    The layout's own limit for concurrent sessions (one log per session): a
    round is durable after one ``syncfs`` of the file system where Linux has
    it (one journal commit for every file), else after an ``fsync`` per file.
    """
    directory.mkdir(exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    fds = [os.open(directory / f"{i}.jsonl", flags, 0o644) for i in range(files)]
    try:
        for fd in fds:
            os.fsync(fd)
        start = time.perf_counter()
        for _ in range(rounds):
            for fd in fds:
                os.write(fd, line)
            if _syncfs is not None:
                _syncfs(fds[0])
            else:
                for fd in fds:
                    os.fsync(fd)
        return time.perf_counter() - start
    finally:
        for fd in fds:
            os.close(fd)


def read_decode(path: Path, *, collect: bool = True, block: int = 1 << 16) -> tuple[float, int]:
    """Seconds to read the file in ``block``-byte reads and decode every line; and the count.

    Streamed, like a replay: each block's records are dropped before the next
    read, so the limit does not pay for holding the whole history. Small
    blocks matter: records that survive a young-generation collection are
    traced again and again (64 KiB decodes ~2.5x faster than 4 MiB here).
    With ``collect=False`` the cyclic garbage collector is off meanwhile.
    """
    enabled = gc.isenabled()
    if not collect:
        gc.disable()
    try:
        count = 0
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            rest = b""
            while block_bytes := f.read(block):
                data = rest + block_bytes
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                count += len(_decode_lines(data[:cut]))
            if rest:
                count += len(_decode_lines(rest))
        return time.perf_counter() - start, count
    finally:
        if enabled:
            gc.enable()
