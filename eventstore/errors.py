"""The error tree (see :mod:`eventstore._errors`); ``from eventstore.errors import ...``."""

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
from ._errors import __all__ as __all__
