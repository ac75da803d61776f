"""The embedded default backend: one JSONL file per session and branch.

``FileEventStore`` is the store; ``FileOps`` the seam its I/O goes through
(tests inject faults there); ``FileStoreStatistics`` what ``statistics()``
reports. Private modules, one job each: ``_writer`` (the I/O thread and group
commit), ``_tail`` and ``_leftover`` (what an open trusts of a file's end),
``_index`` (sparse offsets), ``_id_window`` (the idempotency window), ``_manifest``
(``branches.json``), ``_batch`` (the batch marker), ``_session`` (per-session
state), ``_lock`` (one writer per root), ``_feed`` (the global feed's index),
``_follow`` (a read-only store waking on the writer's feed writes).
"""

from ._store import FileEventStore as FileEventStore
from ._store import FileStoreStatistics as FileStoreStatistics
from ._writer import FileOps as FileOps

__all__ = ("FileEventStore", "FileOps", "FileStoreStatistics")
