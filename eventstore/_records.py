"""The records every backend stores and returns.

Schema evolution rules (records outlive the code that wrote them):

* a new field always gets a default, so old lines still decode;
* a field never changes type and is never renamed;
* unknown fields in stored JSON are ignored, so old code reads new lines.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from ._fields import check_fields
from ._ulid import new_ulid

__all__ = ("BranchInfo", "EventRecord", "MergeResult", "SessionInfo", "utc_now")


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class EventRecord(msgspec.Struct, frozen=True):
    """One event of a session's branch; one JSON object per line on disk.

    ``sequence`` is the 1-based position in the branch's logical history.
    ``branch_id`` is the branch the event was written on: a fork's inherited
    events keep the branch id of the ancestor that wrote them.
    """

    session_id: str
    branch_id: str
    sequence: int
    kind: str
    data: Any = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    event_id: str = msgspec.field(default_factory=new_ulid)
    recorded_at: datetime = msgspec.field(default_factory=utc_now)
    #: Place in the store's global feed: unique, increasing in the order records
    #: become visible, never reused; ``0`` until the record is stored. A store
    #: assigns it and ignores the value an appended record carries.
    position: int = 0

    @classmethod
    def new(
        cls,
        session_id: str,
        branch_id: str,
        sequence: int,
        kind: str,
        data: Any = None,
        *,
        metadata: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> EventRecord:
        """Build a validated record with a fresh ULID and the current UTC time.

        :raises InvalidIdentifier: for a bad ``session_id`` or ``branch_id``.
        :raises InvalidEvent: for an empty ``kind``, a sequence below 1, or a
            ``data``/``metadata`` value that is not plain JSON.
        """
        record = cls(
            session_id=session_id,
            branch_id=branch_id,
            sequence=sequence,
            kind=kind,
            data=data,
            metadata={} if metadata is None else metadata,
            event_id=new_ulid() if event_id is None else event_id,
        )
        check_fields(record)
        return record


class BranchInfo(msgspec.Struct, frozen=True):
    """Where a branch comes from and how far it got.

    A root branch has ``parent_branch=None`` and ``fork_sequence=0``. A closed
    branch takes no more appends: one closed by
    :meth:`~eventstore.EventStore.close_branch` or merged (``merged_into`` set).
    """

    session_id: str
    branch_id: str
    parent_branch: str | None
    fork_sequence: int
    head: int
    created_at: datetime
    merged_into: str | None = None
    closed: bool = False


class SessionInfo(msgspec.Struct, frozen=True):
    """One session as :meth:`~eventstore.EventStore.sessions` lists it.

    ``events`` counts the records the session stores over all its branches (a
    fork's inherited records once, a merge's copies again); ``last_activity`` is
    the latest of any record's ``recorded_at`` and any branch's creation or close.
    """

    session_id: str
    branches: int
    events: int
    created_at: datetime
    last_activity: datetime


class MergeResult(msgspec.Struct, frozen=True):
    """What :meth:`EventStore.merge_branch` did: ``merged_events`` is a count."""

    source_branch: str
    target_branch: str
    merged_events: int
    target_head: int
