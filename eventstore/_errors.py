"""The errors every backend raises, translated once at the backend boundary.

::

    EventStoreError
    ├── SequenceConflict          (session_id, branch_id, expected, actual)
    ├── InvalidIdentifier         (ValueError; field, value)
    ├── InvalidEvent              (ValueError; reason)
    ├── InvalidBranchOperation    (ValueError; session_id, branch_id, reason)
    ├── BranchNotFound            (LookupError; session_id, branch_id)
    ├── BranchExists              (session_id, branch_id)
    ├── BranchClosed              (session_id, branch_id, merged_into)
    ├── CorruptLog                (path, line_number, reason)
    ├── StoreLocked               (path)
    ├── StoreClosed
    ├── ReadOnlyStore
    └── StorageError              (reason, errno; disk full, I/O error, lost connection)

Errors carry their facts as attributes and build their own message, so callers
branch on fields, never on text.
"""

from __future__ import annotations

import errno as _errno

__all__ = (
    "BranchClosed",
    "BranchExists",
    "BranchNotFound",
    "CorruptLog",
    "EventStoreError",
    "InvalidBranchOperation",
    "InvalidEvent",
    "InvalidIdentifier",
    "ReadOnlyStore",
    "SequenceConflict",
    "StorageError",
    "StoreClosed",
    "StoreLocked",
)


class EventStoreError(Exception):
    """Base class of every error raised by an event store."""


class SequenceConflict(EventStoreError):
    """An append did not carry the next sequence of its branch.

    The writer saw a stale head: re-read, decide again, retry.
    """

    def __init__(self, session_id: str, branch_id: str, expected: int, actual: int) -> None:
        self.session_id = session_id
        self.branch_id = branch_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"sequence conflict on {session_id}/{branch_id}: expected {expected}, got {actual}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.session_id, self.branch_id, self.expected, self.actual))


class InvalidIdentifier(EventStoreError, ValueError):
    """A session or branch id does not match ``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$``."""

    def __init__(self, field: str, value: object) -> None:
        self.field = field
        self.value = value
        super().__init__(
            f"invalid {field} {value!r}: use 1-128 characters of [A-Za-z0-9._-], "
            "starting with a letter or digit, without '..'"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, self.value))


class InvalidEvent(EventStoreError, ValueError):
    """An event cannot be stored as given (bad kind, sequence, payload or size)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid event: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason,))


class InvalidBranchOperation(EventStoreError, ValueError):
    """A fork or merge that the branch graph does not allow.

    Raised for a fork point outside ``0..head(parent)``, a merge of a branch into
    itself or into one of its own descendants.
    """

    def __init__(self, session_id: str, branch_id: str, reason: str) -> None:
        self.session_id = session_id
        self.branch_id = branch_id
        self.reason = reason
        super().__init__(f"{session_id}/{branch_id}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.session_id, self.branch_id, self.reason))


class BranchNotFound(EventStoreError, LookupError):
    """The session has no such branch."""

    def __init__(self, session_id: str, branch_id: str) -> None:
        self.session_id = session_id
        self.branch_id = branch_id
        super().__init__(f"branch {branch_id!r} not found in session {session_id!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.session_id, self.branch_id))


class BranchExists(EventStoreError):
    """``create_branch`` named a branch the session already has."""

    def __init__(self, session_id: str, branch_id: str) -> None:
        self.session_id = session_id
        self.branch_id = branch_id
        super().__init__(f"branch {branch_id!r} already exists in session {session_id!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.session_id, self.branch_id))


class BranchClosed(EventStoreError):
    """The branch was closed or merged; it takes no more appends and no forks.

    ``merged_into`` names the merge target, ``None`` for a branch closed by
    :meth:`~eventstore.EventStore.close_branch`.
    """

    def __init__(self, session_id: str, branch_id: str, merged_into: str | None = None) -> None:
        self.session_id = session_id
        self.branch_id = branch_id
        self.merged_into = merged_into
        how = "" if merged_into is None else f" (merged into {merged_into!r})"
        super().__init__(f"branch {branch_id!r} of session {session_id!r} is closed{how}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.session_id, self.branch_id, self.merged_into))


class CorruptLog(EventStoreError):
    """Stored data is damaged somewhere other than a torn last line."""

    def __init__(self, path: str, line_number: int, reason: str) -> None:
        self.path = str(path)
        self.line_number = line_number
        self.reason = reason
        super().__init__(f"{self.path}:{line_number}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.line_number, self.reason))


class StoreLocked(EventStoreError):
    """Another writer holds the store (the file store's ``<root>/.lock``)."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path} is locked by another writer")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path,))


class StoreClosed(EventStoreError):
    """The store was used after ``close()``."""

    def __init__(self, message: str = "the event store is closed") -> None:
        super().__init__(message)


class ReadOnlyStore(EventStoreError):
    """A write was attempted on a store opened with ``read_only=True``."""

    def __init__(self, message: str = "the event store was opened read-only") -> None:
        super().__init__(message)


class StorageError(EventStoreError):
    """The storage underneath failed (disk full, I/O error, lost connection).

    Nothing of the failed operation was acknowledged or kept; the store stays
    usable and the operation may be retried. ``errno`` is set when the cause was
    an :class:`OSError`.
    """

    def __init__(self, reason: str, errno: int | None = None) -> None:
        self.reason = reason
        self.errno = errno
        name = f" [{_errno.errorcode.get(errno, errno)}]" if errno is not None else ""
        super().__init__(f"storage failure{name}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason, self.errno))
