"""Rows to records for :mod:`eventstore.postgres`, by column name.

The statements in :mod:`._schema` name the columns these read; asyncpg's
``Record`` looks them up by name, so a reordered column list cannot shift a
field silently.
"""

from __future__ import annotations

from typing import Any

from .._json import decode
from .._records import BranchInfo, EventRecord, SessionInfo

__all__ = ("info", "record", "records", "session_info")


def record(session_id: str, row: Any) -> EventRecord:
    """The :class:`EventRecord` of an events row of ``session_id``."""
    return EventRecord(
        session_id,
        row["branch_id"],
        row["sequence"],
        row["kind"],
        decode(row["data"]),
        decode(row["metadata"]),
        row["event_id"],
        row["recorded_at"],
        row["position"],
    )


def records(rows: list[Any]) -> list[EventRecord]:
    """Records of feed rows, which carry their ``session_id``."""
    return [record(row["session_id"], row) for row in rows]


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
