"""A session's lookup index: event id and ``metadata["key"]`` -> where the record is.

Built on the first lookup of a session by reading every branch's own records
once (O(session), in the I/O thread's chunks), then kept current by reading
only what each branch gained since (O(new records)). It lives in the cached
:class:`~eventstore.file._session.Session`: an evicted session builds it again
on its next lookup, and a read-only store following a writer catches up the
same way, from the files.

It notes, per branch, the branch object, its creation time and the head and
size it indexed. A branch gone, replaced (deleted and created again), or
shorter than that (a torn tail or an undone merge cut back) makes the whole
index stale: it is dropped and built again, so no record that is no longer
stored is ever found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from .._records import EventRecord
from ._session import Branch

__all__ = ("Lookup",)


class Lookup:
    """Event ids and keys of one session's records, over all its branches."""

    __slots__ = ("by_key", "ids", "marks")

    def __init__(self) -> None:
        #: event id -> (branch id, sequence) of the branch that wrote it.
        self.ids: dict[str, tuple[str, int]] = {}
        #: ``metadata["key"]`` (a str) -> (position, branch id, sequence) of the last written.
        self.by_key: dict[str, tuple[int, str, int]] = {}
        #: branch id -> (the branch, its created_at, indexed head, indexed size).
        self.marks: dict[str, tuple[Branch, datetime, int, int]] = {}

    def stale(self, branches: Mapping[str, Branch]) -> bool:
        """Whether a branch indexed here is gone, replaced or cut back."""
        for name, (branch, created_at, head, size) in self.marks.items():
            now = branches.get(name)
            if (
                now is not branch
                or now.meta.created_at != created_at
                or now.head < head
                or now.size < size
            ):
                return True
        return False

    def indexed(self, branch: Branch) -> int:
        """The last sequence of ``branch`` indexed (its fork point if none)."""
        mark = self.marks.get(branch.branch_id)
        return branch.fork_sequence if mark is None else mark[2]

    def add(self, records: Iterable[EventRecord]) -> None:
        ids, keys = self.ids, self.by_key
        for record in records:
            ids[record.event_id] = (record.branch_id, record.sequence)
            metadata = record.metadata
            if metadata:
                key = metadata.get("key")
                if type(key) is str:
                    known = keys.get(key)
                    if known is None or record.position >= known[0]:
                        keys[key] = (record.position, record.branch_id, record.sequence)

    def mark(self, branch: Branch, head: int, size: int) -> None:
        self.marks[branch.branch_id] = (branch, branch.meta.created_at, head, size)
