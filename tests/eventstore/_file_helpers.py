"""Helpers for the file store tests: a system-call seam that fails on demand."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import msgspec

from eventstore import EventRecord
from eventstore.file import FileOps
from eventstore.file._batch import encode_batch


def ev(session: str, seq: int, branch: str = "main", data: object = None) -> EventRecord:
    return EventRecord.new(session, branch, seq, "message", {"n": seq} if data is None else data)


class FaultyOps(FileOps):
    """Counts calls and raises ``OSError(code)`` at the chosen call of a method.

    ``arm("fsync", errno.EIO)`` fails the next ``fsync``; ``short=True`` on
    ``pwrite`` first writes half the bytes (a torn write), then fails.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._armed: dict[str, tuple[int, int, bool]] = {}
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def arm(
        self, name: str, code: int = errno.ENOSPC, *, skip: int = 0, short: bool = False
    ) -> None:
        self._armed[name] = (skip, code, short)

    def _check(self, name: str) -> tuple[int, bool] | None:
        with self._lock:
            self.calls[name] += 1
            armed = self._armed.get(name)
            if armed is None:
                return None
            skip, code, short = armed
            if skip:
                self._armed[name] = (skip - 1, code, short)
                return None
            del self._armed[name]
            return code, short

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.gate is not None:
            self.gate.wait()
        fault = self._check("pwrite")
        if fault is not None:
            code, short = fault
            if short and len(data) > 1:
                written = super().pwrite(fd, data[: len(data) // 2], offset)
                self.arm("pwrite", code)
                return written
            raise OSError(code, os.strerror(code))
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        fault = self._check("fsync")
        if fault is not None:
            raise OSError(fault[0], os.strerror(fault[0]))
        super().fsync(fd)

    def syncfs(self, fd: int) -> None:
        fault = self._check("syncfs")
        if fault is not None:
            raise OSError(fault[0], os.strerror(fault[0]))
        super().syncfs(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self.calls["ftruncate"] += 1
        super().ftruncate(fd, size)


def encode_line(record: EventRecord) -> bytes:
    """The line the file store writes for ``record`` appended on its own."""
    return encode_batch([record], 2**31)


def lines_of(path: Path) -> list[bytes]:
    """The file's lines, asserting it ends with a complete one."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"partial line at the end of {path}"
    return data.splitlines(keepends=True)


def legacy_root(root: Path, session: str, branch: str) -> None:
    """Make ``branch`` (a fork of an empty ``main`` at 0) a root and drop ``main``.

    What stores written before only ``main`` was implicit may hold: a session
    whose root is another branch, ``main`` named nowhere.
    """
    path = root / session / "branches.json"
    manifest = json.loads(path.read_bytes())
    manifest["branches"] = [b for b in manifest["branches"] if b["branch_id"] != "main"]
    for meta in manifest["branches"]:
        if meta["branch_id"] == branch:
            meta["parent_branch"], meta["fork_sequence"] = None, 0
    path.write_text(json.dumps(manifest))


def bare(records: EventRecord | list[EventRecord]) -> object:
    """Records without their store-assigned ``position``, to compare with what was appended."""
    if isinstance(records, EventRecord):
        return msgspec.structs.replace(records, position=0)
    return [msgspec.structs.replace(r, position=0) for r in records]


async def kill_after(
    child: str, root: Path, acks: int, seed: int, *, ready: bool = False
) -> dict[str, int]:
    """Run the writer script ``child`` on ``root`` and SIGKILL it after ``acks`` acknowledgements.

    The script prints one line per acknowledged write, ending in ``SESSION SEQ``
    (first a ``ready`` line if ``ready``).

    :returns: the highest acknowledged sequence of each session.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        child,
        str(root),
        str(seed),
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    acked: dict[str, int] = {}
    assert proc.stdout is not None
    try:
        if ready:
            assert (await proc.stdout.readline()).strip() == b"ready"
        for _ in range(acks):
            line = await proc.stdout.readline()
            assert line, "the writer died before it was killed"
            session, seq = line.split()[-2:]
            acked[session.decode()] = max(acked.get(session.decode(), 0), int(seq))
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return acked
