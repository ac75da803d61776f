"""The embedded default backend: one JSONL file per session and branch.

``FileEventStore`` is the store; ``FileOps`` the seam its I/O goes through
(tests inject faults there); ``FileStoreStatistics`` what ``statistics()``
reports. Private modules, one job each: ``_writer`` (the I/O thread and group
commit), ``_tail`` and ``_leftover`` (what an open trusts of a file's end),
``_index`` (sparse offsets), ``_id_window`` (the idempotency window), ``_manifest``
(``branches.json``), ``_batch`` (the batch marker), ``_session`` (per-session
state), ``_lock`` (one writer per root),
``_erase`` (deleting sessions and branches), ``_summary`` (what ``sessions()``
lists without reading logs), ``_feed`` (the global feed's index), ``_follow``
(a read-only store waking on the writer's feed writes), ``_verify``
(:func:`verify`: the files checked by those same rules, read-only, every
problem reported).
"""

from ._store import FileEventStore as FileEventStore
from ._store import FileStoreStatistics as FileStoreStatistics
from ._verify import VerifyProblem as VerifyProblem
from ._verify import VerifyProgress as VerifyProgress
from ._verify import VerifyReport as VerifyReport
from ._verify import verify as verify
from ._writer import FileOps as FileOps

__all__ = (
    "FileEventStore",
    "FileOps",
    "FileStoreStatistics",
    "VerifyProblem",
    "VerifyProgress",
    "VerifyReport",
    "verify",
)
