"""eventstore: records, identifiers, errors, the EventStore contract and its backends.

Three backends: :mod:`eventstore.memory` (a module), :mod:`eventstore.file`
and :mod:`eventstore.postgres` (packages holding their private modules; the
latter needs the ``postgres`` extra). The first two are re-exported here.
"""

from ._base import EventStore as EventStore
from ._consumers import ConsumerInfo as ConsumerInfo
from ._consumers import ConsumerState as ConsumerState
from ._consumers import DeadLetter as DeadLetter
from ._errors import BranchClosed as BranchClosed
from ._errors import BranchExists as BranchExists
from ._errors import BranchNotFound as BranchNotFound
from ._errors import CorruptLog as CorruptLog
from ._errors import EventStoreError as EventStoreError
from ._errors import InvalidBranchOperation as InvalidBranchOperation
from ._errors import InvalidEvent as InvalidEvent
from ._errors import InvalidIdentifier as InvalidIdentifier
from ._errors import ReadOnlyStore as ReadOnlyStore
from ._errors import SequenceConflict as SequenceConflict
from ._errors import StorageError as StorageError
from ._errors import StoreClosed as StoreClosed
from ._errors import StoreLocked as StoreLocked
from ._ids import MAIN as MAIN
from ._ids import check_identifier as check_identifier
from ._ids import is_valid_identifier as is_valid_identifier
from ._records import BranchInfo as BranchInfo
from ._records import EventRecord as EventRecord
from ._records import MergeResult as MergeResult
from ._records import SessionInfo as SessionInfo
from ._ulid import new_ulid as new_ulid
from .file import FileEventStore as FileEventStore
from .memory import MemoryEventStore as MemoryEventStore

__all__ = (
    "MAIN",
    "BranchClosed",
    "BranchExists",
    "BranchInfo",
    "BranchNotFound",
    "ConsumerInfo",
    "ConsumerState",
    "CorruptLog",
    "DeadLetter",
    "EventRecord",
    "EventStore",
    "EventStoreError",
    "FileEventStore",
    "InvalidBranchOperation",
    "InvalidEvent",
    "InvalidIdentifier",
    "MemoryEventStore",
    "MergeResult",
    "ReadOnlyStore",
    "SequenceConflict",
    "SessionInfo",
    "StorageError",
    "StoreClosed",
    "StoreLocked",
    "check_identifier",
    "is_valid_identifier",
    "new_ulid",
)
