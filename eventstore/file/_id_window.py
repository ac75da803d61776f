"""The file store's window of recent event ids, which makes writes safe to retry.

Each branch remembers the ids of its last :data:`~eventstore._base.IDEMPOTENCY_WINDOW`
own records (``event_id -> sequence``, in sequence order), so checking that an
append's ids are new costs one dict lookup per branch of the session, never a
scan of the history. A window is read lazily, from the tail of the branch's file,
by the first write to its session after the store opened (or after the session
left the cache); only ``sequence`` and ``event_id`` of each line are decoded.

A write's ids enter the window when it is handed to the I/O thread, so a
concurrent retry of it is recognised, and leave it again if the write fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

import msgspec

from .._base import IDEMPOTENCY_WINDOW
from .._records import EventRecord
from ._index import CHUNK, Owner, SparseIndex, corrupt_at
from ._session import Branch
from ._writer import FileOps

__all__ = ("forget", "recent_ids", "remember")

#: How far a window may grow past its size before it is cut back to it, so the
#: cut (a copy) costs O(1) per append, amortised.
_SLACK = IDEMPOTENCY_WINDOW // 4


class _Id(msgspec.Struct):
    sequence: int
    event_id: str


_decode_ids = msgspec.json.Decoder(_Id).decode_lines


def recent_ids(
    ops: FileOps,
    fd: int,
    path: str,
    index: SparseIndex,
    session_id: str,
    branch_id: str,
    fork: int,
    head: int,
    size: int,
    window: int = IDEMPOTENCY_WINDOW,
) -> dict[str, int]:
    """The ids of the branch's last ``window`` own records, on the I/O thread.

    :param fork: the branch's fork sequence: its own records start after it.
    :param head: the sequence of the record ending at byte ``size``.
    :raises CorruptLog: for an undecodable line or a break in the sequences.
    """
    first = max(fork + 1, head - window + 1)
    ids: dict[str, int] = {}
    if head < first:
        return ids
    sequence, offset = index.locate(ops, fd, path, first, (fork + 1, 0), (head + 1, size))
    while offset < size:
        data = ops.pread(fd, min(CHUNK, size - offset), offset)
        cut = data.rfind(b"\n") + 1
        while cut == 0 and offset + len(data) < size:
            # One record larger than a chunk: read on until its newline.
            more = ops.pread(fd, min(len(data), size - offset - len(data)), offset + len(data))
            if not more:
                break
            data += more
            cut = data.rfind(b"\n") + 1
        owner = Owner(session_id, branch_id, sequence)
        if cut == 0:
            raise corrupt_at(ops, fd, path, offset, data, owner, "truncated record")
        try:
            found = _decode_ids(data[:cut])
        except msgspec.DecodeError as exc:
            raise corrupt_at(ops, fd, path, offset, data[:cut], owner, str(exc)) from exc
        for record in found:
            if record.sequence != sequence:
                raise corrupt_at(ops, fd, path, offset, data[:cut], owner, "out of sequence")
            if sequence >= first:
                ids[record.event_id] = sequence
            sequence += 1
        offset += cut
    return ids


def remember(branch: Branch, events: Sequence[EventRecord]) -> None:
    """Add a write's ids to the branch's window (if it is loaded), then bound it."""
    ids = branch.ids
    if ids is None:
        return
    for event in events:
        ids[event.event_id] = event.sequence
    if len(ids) > IDEMPOTENCY_WINDOW + _SLACK:
        # Insertion order is sequence order: keep the newest.
        branch.ids = dict(islice(ids.items(), len(ids) - IDEMPOTENCY_WINDOW, None))


def forget(branch: Branch, events: Sequence[EventRecord]) -> None:
    """Take a failed write's ids out of the branch's window again."""
    ids = branch.ids
    if ids is None:
        return
    for event in events:
        if ids.get(event.event_id) == event.sequence:
            del ids[event.event_id]
