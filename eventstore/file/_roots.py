"""New root branches, many sessions at once: the group commit of session creation.

A new session's first events are written before the manifest that names
their branch (:mod:`eventstore.file._leftover`), so creating one takes two
syncs: one for the directory, the events, their feed entries and the staged
manifest, one for the rename that names the branch. Concurrent creations
wait for the group on the I/O thread to finish and go as the next group:
``k`` sessions still take two syncs (``syncfs``), not ``2k``.

On disk nothing changes: each session of a group is written exactly as a
lone one is, and a kill anywhere leaves each whole or new (its file an
orphan the next load sets aside; its feed entries, in the index's last
round, cut on open). The group's feed entries are one round of the index, in
position order: the positions are given on the loop when the group is handed
over, and :meth:`Writer.call_done` commits the writes queued before it first.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from .._records import EventRecord
from ._manifest import MANIFEST, Manifest, Staged, commit_manifest, discard_manifest, stage_manifest
from ._tail import prepare_root
from ._writer import DIRECTORY, NOFOLLOW, FileOps, Writer, storage_error

if TYPE_CHECKING:
    from ._feed import FeedFile, FeedPart
    from ._session import Branch, Session

__all__ = ("RootJob", "write_roots")


class RootJob:
    """One new root branch of a group: what to write, and how it went (set on the I/O thread)."""

    __slots__ = (
        "branch",
        "data",
        "error",
        "future",
        "manifest",
        "part",
        "session",
        "staged",
        "stored",
    )

    def __init__(
        self,
        session: Session,
        branch: Branch,
        future: asyncio.Future[list[EventRecord]],
        stamped: tuple[list[EventRecord], bytes, FeedPart],
        manifest: Manifest,
    ) -> None:
        self.session = session
        self.branch = branch
        self.future = future
        self.stored, self.data, self.part = stamped
        self.manifest = manifest
        self.staged: Staged | None = None
        self.error: BaseException | None = None

    @property
    def directory(self) -> str:
        return self.session.directory


def _fail(job: RootJob, exc: BaseException, what: str, ops: FileOps) -> None:
    job.error = storage_error(exc, what) if isinstance(exc, OSError) else exc
    staged, job.staged = job.staged, None
    if staged is not None:
        discard_manifest(ops, staged)


def write_roots(writer: Writer, root_fd: int, feed: FeedFile, jobs: list[RootJob]) -> None:
    """Create every job's session directory, first events and manifest, with two syncs.

    On the I/O thread, for a store that syncs and has ``syncfs``. Each job's
    ``error`` says how it went. A job that fails leaves no entry in the feed
    index and no manifest (one renamed before the last sync failed is
    removed again), so its session stays new; its file, if any, is an orphan
    the next load sets aside.
    """
    ops = writer.ops
    ready: list[RootJob] = []
    for job in jobs:
        try:
            prepare_root(writer, root_fd, job.directory, job.branch.file, sync=False)
        except BaseException as exc:
            _fail(job, exc, f"create {job.directory}", ops)
            continue
        ready.append(job)
    if not ready:
        return
    try:
        region = feed.append([job.part for job in ready])
    except OSError as exc:
        for job in ready:
            _fail(job, exc, "write the feed index", ops)
        return
    written: list[RootJob] = []
    for job in ready:
        try:
            writer.write_now(
                job.directory, job.branch.file, job.data, sync_directory=False, sync=False
            )
            job.staged = stage_manifest(ops, root_fd, job.directory, job.manifest, sync=False)
        except BaseException as exc:
            _fail(job, exc, f"write {job.directory}/{job.branch.file}", ops)
            continue
        written.append(job)
    _keep(feed, region, ready, written)
    if not written:
        return
    try:
        writer.syncs += 1
        ops.syncfs(root_fd)
        feed.streams_dirty = False
    except OSError as exc:
        for job in written:
            _fail(job, exc, "syncfs", ops)
        _keep(feed, region, written, [])
        return
    named: list[RootJob] = []
    for job in written:
        staged, job.staged = job.staged, None
        assert staged is not None
        try:
            commit_manifest(ops, staged, sync=False)
        except BaseException as exc:
            _fail(job, exc, f"name the branch in {job.directory}", ops)
            continue
        named.append(job)
    _keep(feed, region, written, named)
    if not named:
        return
    try:
        writer.syncs += 1
        ops.syncfs(root_fd)
    except OSError as exc:
        # Not acknowledged, so not named: the files left are orphans set aside later.
        for job in named:
            job.error = storage_error(exc, "syncfs")
            _unname(ops, job.directory)
        _keep(feed, region, named, [])


def _unname(ops: FileOps, directory: str) -> None:
    """Remove a new session's manifest again (there was none before it), if possible."""
    try:
        fd = ops.open(directory, os.O_RDONLY | DIRECTORY | NOFOLLOW)
    except OSError:
        return
    try:
        ops.unlink(MANIFEST, dir_fd=fd)
    except OSError:
        pass
    finally:
        ops.close(fd)


def _keep(feed: FeedFile, region: int | None, before: list[RootJob], after: list[RootJob]) -> None:
    """Rewrite the group's round of the index without the jobs that failed meanwhile."""
    if region is None or len(after) == len(before):
        return
    feed.keep(region, [job.part for job in after], feed.sync_writes)
