"""How the CLI prints: records for people, records for ``jq``, tables, branch trees."""

from __future__ import annotations

import os
import select
import shutil
import stat
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, BinaryIO

from eventstore import MAIN, BranchInfo, EventRecord
from eventstore._json import encode
from eventstore._lineage import children

__all__ = (
    "Output",
    "branch_state",
    "branch_tree",
    "format_record",
    "format_time",
    "plural",
    "table",
)


class Output:
    """Standard output as bytes, so ``--json`` and ``export`` write records exactly.

    :param follow: flush after every line (``tail -f`` behind a pipe must not
        sit on a block-buffered event).
    """

    def __init__(self, stream: BinaryIO | None = None, *, follow: bool = False) -> None:
        self._stream = sys.stdout.buffer if stream is None else stream
        self._encoding = sys.stdout.encoding or "utf-8"
        self.follow = follow
        # Data is cut to the terminal's width for a person; piped, nothing is cut.
        self.width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        self._poller: select.poll | None = None
        try:
            fd = self._stream.fileno()
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                self._poller = select.poll()
                self._poller.register(fd, 0)
        except (OSError, ValueError, AttributeError):
            pass

    def reader_gone(self) -> bool:
        """Whether stdout is a pipe its reader has closed (``tail -f | head``)."""
        if self._poller is None:
            return False
        gone = select.POLLERR | select.POLLHUP
        return any(events & gone for _, events in self._poller.poll(0))

    def line(self, text: str = "") -> None:
        """Write one line of text."""
        self._stream.write(text.encode(self._encoding, "backslashreplace") + b"\n")
        if self.follow:
            self._stream.flush()

    def json(self, value: Any) -> None:
        """Write ``value`` as one compact JSON line (records exactly as stored)."""
        self._stream.write(encode(value) + b"\n")
        if self.follow:
            self._stream.flush()

    def flush(self) -> None:
        """Push everything written so far."""
        self._stream.flush()


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 event``, ``2 events`` (``nouns`` for irregular plurals)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def format_time(moment: datetime) -> str:
    """``2026-11-22 02:30:01.123`` in UTC, the way every record is stamped."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _compact(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data if data.isprintable() else encode(data).decode()
    return encode(data).decode()


def format_record(record: EventRecord, branch_id: str, width: int | None = None) -> str:
    """One event for a person: sequence, time, kind, where it came from, its data.

    The branch is shown only for events inherited from an ancestor of
    ``branch_id``; a merged event names the branch and sequence it came from.
    """
    parts = [f"{record.sequence:>6}", format_time(record.recorded_at), f"{record.kind:<14}"]
    if record.branch_id != branch_id:
        parts.append(f"[{record.branch_id}]")
    merged = record.metadata.get("merged_from")
    if isinstance(merged, dict):
        parts.append(f"(merged from {merged.get('branch_id')}#{merged.get('sequence')})")
    head = "  ".join(parts).rstrip()
    data = _compact(record.data)
    if not data:
        return head
    if width is not None and len(head) + 2 + len(data) > width:
        room = max(width - len(head) - 3, 10)
        data = data[:room] + "…"
    return f"{head}  {data}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Left-aligned columns (numbers right-aligned) under a header row."""
    raw = [list(row) for row in rows]
    cells = [[str(cell) for cell in row] for row in raw]
    numeric = [
        bool(raw) and all(isinstance(row[i], int) for row in raw) for i in range(len(headers))
    ]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def render(row: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ).rstrip()

    return [render(headers), *(render(row) for row in cells)]


def _describe(info: BranchInfo) -> list[object]:
    own = info.head - info.fork_sequence
    fork = "-" if info.parent_branch is None else f"{info.parent_branch}@{info.fork_sequence}"
    return [fork, info.head, own, branch_state(info)]


def branch_state(info: BranchInfo) -> str:
    """``open``, ``closed`` or ``merged into B``."""
    if info.merged_into is not None:
        return f"merged into {info.merged_into}"
    return "closed" if info.closed else "open"


def branch_tree(branches: Sequence[BranchInfo]) -> list[str]:
    """The branches as a tree under their roots, children in fork order."""
    graph = children(branches, lambda b: (b.branch_id != MAIN, b.fork_sequence, b.created_at))
    rows: list[list[object]] = []

    def walk(parent: str | None, prefix: str) -> None:
        group = graph.get(parent, [])
        for index, info in enumerate(group):
            last = index == len(group) - 1
            if parent is None:
                label, below = info.branch_id, ""
            else:
                label = f"{prefix}{'└── ' if last else '├── '}{info.branch_id}"
                below = prefix + ("    " if last else "│   ")
            rows.append([label, *_describe(info)])
            walk(info.branch_id, below)

    walk(None, "")
    return table(["BRANCH", "FORKED FROM", "HEAD", "OWN", "STATE"], rows)
