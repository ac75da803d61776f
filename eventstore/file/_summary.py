"""What :meth:`FileEventStore.sessions` lists, without reading whole logs.

Beside each session's manifest a hidden ``.summary.json`` caches each branch
file's size, head and last ``recorded_at``. It is a cache, never trusted: an
entry counts only while its file still has that size; otherwise the file's
last line is read (one ``pread``) and the summary rewritten. A torn or missing
summary is simply rebuilt. It holds no payload, only counts and times.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime

import msgspec

from .._codec import decode_line
from .._json import encode
from .._records import SessionInfo
from ._index import last_line
from ._manifest import Manifest, read_manifest
from ._writer import NOFOLLOW as _NOFOLLOW
from ._writer import FileOps

__all__ = ("SUMMARY", "session_info")

SUMMARY = ".summary.json"


class _End(msgspec.Struct, array_like=True):
    size: int
    head: int
    last_at: datetime | None


_decode = msgspec.json.Decoder(dict[str, _End]).decode


def session_info(ops: FileOps, root: str, session_id: str, *, write: bool) -> SessionInfo | None:
    """The session's :class:`SessionInfo`, ``None`` if it has no manifest.

    :param write: refresh the summary file when it was stale.
    :raises CorruptLog: if the manifest is damaged.
    """
    directory = f"{root}/{session_id}"
    manifest = read_manifest(ops, directory, session_id)
    if manifest is None or not manifest.branches:
        return None
    cached = _read_summary(directory)
    ends: dict[str, _End] = {}
    for meta in manifest.branches:
        ends[meta.branch_id] = _end(ops, directory, meta.branch_id, meta.fork_sequence, cached)
    if write and ends != cached:
        _write_summary(directory, ends)
    return _info(manifest, ends)


def _info(manifest: Manifest, ends: dict[str, _End]) -> SessionInfo:
    created = min(meta.created_at for meta in manifest.branches)
    moments = [created]
    events = 0
    for meta in manifest.branches:
        end = ends[meta.branch_id]
        events += end.head - meta.fork_sequence
        moments.extend(m for m in (meta.created_at, meta.closed_at, end.last_at) if m is not None)
    return SessionInfo(manifest.session_id, len(manifest.branches), events, created, max(moments))


def _end(ops: FileOps, directory: str, branch_id: str, fork: int, cached: dict[str, _End]) -> _End:
    path = f"{directory}/{branch_id}.jsonl"
    try:
        size = os.lstat(path).st_size
    except FileNotFoundError:
        return _End(0, fork, None)
    known = cached.get(branch_id)
    if known is not None and known.size == size:
        return known  # the common case: the file is not even opened
    try:
        fd = ops.open(path, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return _End(0, fork, None)  # deleted since the lstat
    try:
        end = size = ops.fstat(fd).st_size
        # A torn last line: the one before it is the head. Damage further back
        # is not listing's business (reads report it): count what is known.
        for _ in range(2):
            if end <= 0:
                break
            start, line = last_line(ops, fd, end)
            record = decode_line(line)
            if record is not None:
                return _End(size, record.sequence, record.recorded_at)
            end = start
        return _End(size, fork, None)
    finally:
        ops.close(fd)


def _read_summary(directory: str) -> dict[str, _End]:
    try:
        with open(f"{directory}/{SUMMARY}", "rb") as file:
            return _decode(file.read())
    except (OSError, msgspec.DecodeError):
        return {}


def _write_summary(directory: str, ends: dict[str, _End]) -> None:
    temp = f"{directory}/{SUMMARY}.tmp"
    # A cache: no sync; a torn one reads as missing and is rebuilt.
    with contextlib.suppress(OSError):
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
        with open(fd, "wb") as file:
            file.write(encode(ends))
        os.replace(temp, f"{directory}/{SUMMARY}")
