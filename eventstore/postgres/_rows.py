"""Rows to records for :mod:`eventstore.postgres`.

An events row is read by position, in the order of :data:`EVENT_COLUMNS`,
which :mod:`._schema` selects from (so the two cannot drift apart): unpacking
is several times faster than looking nine columns up by name, which counts on
a 5,000-event read. The other rows (branches, sessions, the feed's) are read
by column name.
"""

from __future__ import annotations

from typing import Any

from .._json import decode
from .._records import BranchInfo, EventRecord, SessionInfo

__all__ = ("EVENT_COLUMNS", "info", "record", "records", "session_info")

#: The columns of every statement returning events rows of one session, in
#: this order (the feed's rows carry ``session_id`` and are read by name).
EVENT_COLUMNS = (
    "branch_id",
    "sequence",
    "event_id",
    "kind",
    "data",
    "metadata",
    "recorded_at",
    "position",
)


def record(session_id: str, row: Any) -> EventRecord:
    """The :class:`EventRecord` of an events row of ``session_id`` (:data:`EVENT_COLUMNS`)."""
    branch_id, sequence, event_id, kind, data, metadata, recorded_at, position = row
    return EventRecord(
        session_id,
        branch_id,
        sequence,
        kind,
        decode(data),
        # Most records carry no metadata, stored as the text the encoder wrote.
        {} if metadata == "{}" else decode(metadata),
        event_id,
        recorded_at,
        position,
    )


def records(rows: list[Any]) -> list[EventRecord]:
    """Records of feed rows, which carry their ``session_id``; read by column name."""
    return [
        EventRecord(
            row["session_id"],
            row["branch_id"],
            row["sequence"],
            row["kind"],
            decode(row["data"]),
            decode(row["metadata"]),
            row["event_id"],
            row["recorded_at"],
            row["position"],
        )
        for row in rows
    ]


def info(session_id: str, row: Any) -> BranchInfo:
    """The :class:`BranchInfo` of a branches row of ``session_id``."""
    return BranchInfo(
        session_id,
        row["branch_id"],
        row["parent_branch"],
        row["fork_sequence"],
        row["head"],
        row["created_at"],
        row["merged_into"],
        row["closed"],
    )


def session_info(row: Any) -> SessionInfo:
    """The :class:`SessionInfo` of a row of the ``sessions`` page query."""
    return SessionInfo(
        row["session_id"],
        row["branches"],
        row["events"],
        row["created_at"],
        row["last_activity"],
    )
