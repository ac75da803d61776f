"""The file store's cached state of a session and of each of its branches."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import TYPE_CHECKING

from .._ids import is_valid_identifier
from .._records import BranchInfo
from ._branch_log import BRANCH_LOG, BranchLog
from ._index import SparseIndex
from ._manifest import MANIFEST, BranchMeta, Manifest, PendingMerge

if TYPE_CHECKING:
    from ._lookup import Lookup

__all__ = ("Branch", "Session", "list_session_dirs", "manifest_stamp")


class Branch:
    """One branch: its manifest entry, its durable and pending ends, its index.

    ``head``/``size`` are durable (acknowledged) and what reads see;
    ``pending_head``/``pending_size`` include writes handed to the I/O thread
    and are what the next append is checked against.
    """

    __slots__ = (
        "branch_id",
        "file",
        "generation",
        "head",
        "ids",
        "index",
        "inflight",
        "loaded",
        "meta",
        "noted",
        "pending_head",
        "pending_size",
        "size",
        "waiters",
    )

    def __init__(self, meta: BranchMeta) -> None:
        self.meta = meta
        self.branch_id = meta.branch_id
        self.file = f"{meta.branch_id}.jsonl"
        self.loaded = False
        self.head = self.pending_head = meta.fork_sequence
        self.size = self.pending_size = 0
        #: Bumped when a failed write resets the pending end.
        self.generation = 0
        self.inflight = 0
        self.waiters: list[asyncio.Future[None]] = []
        self.index = SparseIndex()
        self.noted = 0
        #: Recent own event ids -> sequences (:mod:`._id_window`); None: not read yet.
        self.ids: dict[str, int] | None = None

    @property
    def parent_branch(self) -> str | None:
        return self.meta.parent_branch

    @property
    def fork_sequence(self) -> int:
        return self.meta.fork_sequence

    @property
    def closed(self) -> bool:
        """Closed by ``close_branch`` or merged: it takes no appends."""
        return self.meta.closed_at is not None or self.meta.merged_into is not None

    def reset(self, head: int, size: int) -> None:
        """Take ``head`` and ``size`` as read from the file."""
        if size < self.size:
            self.index.forget_after(size)
        # Records may have been cut: read the window again when it is needed.
        self.ids = None
        self.head = self.pending_head = head
        self.size = self.pending_size = size

    def wake(self) -> None:
        """Release everyone waiting for the branch's writes to finish."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def info(self, session_id: str) -> BranchInfo:
        meta = self.meta
        return BranchInfo(
            session_id=session_id,
            branch_id=self.branch_id,
            parent_branch=meta.parent_branch,
            fork_sequence=meta.fork_sequence,
            head=self.head,
            created_at=meta.created_at,
            merged_into=meta.merged_into,
            closed=self.closed,
        )


class Session:
    """A session's lock and branches; evictable once idle."""

    __slots__ = (
        "branches",
        "deleted",
        "directory",
        "exists",
        "inflight",
        "loaded",
        "lock",
        "log_last",
        "log_lines",
        "log_size",
        "lookup",
        "pending_merge",
        "session_id",
        "stamp",
        "users",
    )

    def __init__(self, session_id: str, directory: str) -> None:
        self.session_id = session_id
        self.directory = directory
        self.lock = asyncio.Lock()
        self.branches: dict[str, Branch] = {}
        self.loaded = False
        #: Whether the session has a manifest on disk.
        self.exists = False
        self.stamp: object = None
        self.pending_merge: PendingMerge | None = None
        #: Deleted branches whose files may remain (see ``Manifest.deleted``).
        self.deleted: list[str] = []
        #: Operations using the session right now, and writes not yet answered.
        self.users = 0
        self.inflight = 0
        #: The lookup index (:class:`~eventstore.file._lookup.Lookup`), once built.
        self.lookup: Lookup | None = None
        #: The branch log (:mod:`._branch_log`): where its next line goes, how
        #: many lines the manifest has not folded in, the last line's number.
        self.log_size = 0
        self.log_lines = 0
        self.log_last = 0

    def idle(self) -> bool:
        return not self.users and not self.inflight and not self.lock.locked()

    def apply(self, manifest: Manifest, log: BranchLog | None = None) -> None:
        """Adopt the manifest's branch graph (its log applied), keeping known branches' state."""
        branches: dict[str, Branch] = {}
        for meta in manifest.branches:
            known = self.branches.get(meta.branch_id)
            if (
                known is not None
                and known.fork_sequence == meta.fork_sequence
                and known.meta.created_at == meta.created_at
            ):
                known.meta = meta
                branches[meta.branch_id] = known
            else:
                branches[meta.branch_id] = Branch(meta)
        self.branches = branches
        self.pending_merge = manifest.pending_merge
        self.deleted = list(manifest.deleted)
        self.log_size = 0 if log is None else log.size
        self.log_lines = 0 if log is None else log.lines
        self.log_last = manifest.log_lines if log is None else max(log.last, manifest.log_lines)

    def forget(self) -> None:
        """Drop everything cached (the session was deleted): the next use reads the disk."""
        self.branches = {}
        self.loaded = False
        self.exists = False
        self.stamp = None
        self.pending_merge = None
        self.deleted = []
        self.lookup = None
        self.log_size = self.log_lines = self.log_last = 0

    def manifest(self) -> Manifest:
        """The manifest to write now, each loaded branch's durable head noted in it."""
        for branch in self.branches.values():
            if branch.loaded:
                branch.meta.known_head = branch.head
        return Manifest(
            session_id=self.session_id,
            branches=[branch.meta for branch in self.branches.values()],
            pending_merge=self.pending_merge,
            deleted=list(self.deleted),
            log_lines=self.log_last,
        )


def manifest_stamp(directory: str) -> object:
    """What changes when the manifest is replaced or the branch log grows: inode, size, mtime."""
    try:
        found = os.stat(f"{directory}/{MANIFEST}", follow_symlinks=False)
    except OSError:
        return None
    try:
        log = os.stat(f"{directory}/{BRANCH_LOG}", follow_symlinks=False)
    except OSError:
        return (found.st_ino, found.st_size, found.st_mtime_ns)
    return (found.st_ino, found.st_size, found.st_mtime_ns, log.st_size, log.st_mtime_ns)


def list_session_dirs(root: str) -> list[str]:
    """Names of the real directories under ``root`` that hold a manifest."""
    names = []
    with os.scandir(root) as entries:
        for entry in entries:
            if not is_valid_identifier(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                found = os.stat(f"{entry.path}/{MANIFEST}", follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(found.st_mode):
                names.append(entry.name)
    return names
