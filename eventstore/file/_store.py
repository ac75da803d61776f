"""``FileEventStore``: the embedded default, plain JSONL files under one directory.

Layout::

    <root>/.lock                          exclusive flock of the one writer
    <root>/<session_id>/branches.json     the branch graph, replaced atomically
    <root>/<session_id>/branches.log      forks and closes since (:mod:`._branch_log`)
    <root>/<session_id>/<branch_id>.jsonl the branch's own events, one record a line
    <root>/<session_id>/<branch_id>.jsonl.torn   torn tails cut off after a crash
    <root>/<session_id>/.summary.json     what ``sessions()`` lists (a cache)
    <root>/.deleted.<session_id>.<token>  a deleted session's remains (removed on open)
    <root>/.copying.<session_id>.<token>  a copy cut short by a crash (removed on open)
    <root>/feed.idx, <root>/feed.streams  the global feed's index (:mod:`._feed`)
    <root>/.consumers/                    consumers' checkpoints, dead letters, leases
                                          (:mod:`._consumers`; written by read-only stores too)

A fork stores only its own events; its inherited history is read from each
ancestor's file (copy-on-write, :mod:`eventstore._lineage`). Every blocking call
runs on one I/O thread (:mod:`eventstore.file._writer`) which commits all
pending appends of a round with one write per file and one sync; only with
``durability="write"``, an append to an open log with nothing queued is written
(page cache only, never a sync) on the event loop's thread, which is cheaper
than the hop.

Crash safety: a torn last line is cut off when its branch is opened (kept in
``.torn``); a merge records its intent in ``branches.json`` first, so the open
after a crash either confirms it (the target holds every merged event) or cuts
the target back and reopens the source. A batch is atomic against a kill in
the middle of its ``pwrite`` too: all its lines but the last carry a
``batch_end`` field (:mod:`eventstore.file._batch`), and the open cuts a batch
whose last line is missing back to its first. A new root branch's first events
and the manifest entry naming it are one step on the I/O thread; a file the
manifest does not name (a crash struck between the two) is moved to ``.torn``
before its branch is created, forked or merged into, so it never shows.

Appends are pipelined: the sequence check and the hand-off to the I/O thread
happen in one step on the event loop (no await in between), so concurrent
appends to one branch share a round too. Each write names the byte offset it
expects; when a write fails the file is cut back, later writes built on it fail
with it, and the branch's pending head returns to its durable head.

    <root>/<session_id>/.summary.json     what ``sessions()`` lists (a cache)
    <root>/.deleted.<session_id>.<token>  a deleted session's remains (removed on open)

The global feed: every record gets the next ``position`` when the write is
accepted (on the loop, in queue order, so positions follow the rounds), in its
JSON line. Each round appends the records' feed index entries before their
lines and syncs them with the logs; listeners hear of each round's records,
in position order, before its callers resume. A ``read_only`` store with
listeners follows the writer process through the index (:mod:`._follow`).
Records of a root written before the feed existed carry position 0 and are
not in the feed.

Lookups (``get_event``, ``get_by_key``): each cached session builds, on its
first lookup, an index of every event id and ``metadata["key"]`` of its
branches' own records (:mod:`._lookup`, one read of the session), then reads
only what the branches gained since; an evicted session builds it again, a
read-only store catches up from the files. ``read_last`` reads backwards in
growing chunks located through each branch's sparse index; ``read_at`` reads
runs of near sequences in one pass. ``copy_session`` writes the new session
under ``.copying.<id>.<token>`` (one write and sync per branch file, the
manifest last, then the feed entries) and renames the directory into place:
the rename is the commit, so a failure or a crash leaves no target.

Retries: each branch keeps the ids of its last ``IDEMPOTENCY_WINDOW`` (10,000)
records in memory (:mod:`eventstore.file._id_window`), so an append checks its ids
with a dict lookup per branch of the session. The first write to a session
after the store opens, or after the session left the cache, reads those ids
from the tail of each of its branch files. An id older than the window is not
recognised at a new position (a retry at its own sequence still is).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import secrets
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from operator import attrgetter
from typing import Literal

import msgspec

from .._base import EventStore, replay, resolve_retry
from .._consumers import ConsumerInfo, ConsumerState
from .._errors import (
    BranchClosed,
    BranchExists,
    BranchNotFound,
    CorruptLog,
    InvalidBranchOperation,
    ReadOnlyStore,
    StorageError,
    StoreClosed,
)
from .._ids import MAIN, check_identifier
from .._lineage import ancestors, check_merge, merged_records, parents_first, segments
from .._records import BranchInfo, EventRecord, MergeResult, SessionInfo, utc_now
from .._validate import SessionQuery
from ._batch import encode_batch
from ._branch_log import COMPACT_AFTER, LOG_FROM, BranchLog, append_log, cut_log, log_line
from ._consumers import FileConsumerState, list_consumers
from ._erase import (
    COPY_PREFIX,
    bury,
    clear_copies,
    clear_tombstones,
    remove_branch_files,
    remove_tree,
)
from ._feed import INDEX_FILE, FeedFile, FeedPart, Scan, entries_bytes, entry_bytes
from ._follow import Watcher
from ._id_window import forget, recent_ids, remember
from ._index import SPACING, Owner, read_chunk
from ._leftover import LINK_REFUSED, check_unnamed
from ._lock import acquire_lock, release_lock
from ._lookup import Lookup
from ._manifest import (
    MANIFEST,
    BranchMeta,
    Manifest,
    PendingMerge,
    read_branches,
    write_manifest,
)
from ._roots import RootJob, write_roots
from ._session import Branch, Session, list_session_dirs, manifest_stamp
from ._summary import session_info
from ._tail import cut_back, open_tail, prepare_root, set_aside, set_aside_leftovers
from ._writer import DIRECTORY, NOFOLLOW, FileOps, Writer, storage_error

__all__ = ("FileEventStore", "FileOps", "FileStoreStatistics")

#: Bytes of records one read call on the I/O thread returns at most.
_READ_BUDGET = 256 * 1024
#: Feed index entries one read call on the I/O thread looks at, at most.
_FEED_STEP = 4096

_replace = msgspec.structs.replace
_sequence_of = attrgetter("sequence")

#: Records ``read_last`` reads in its first step backwards; each next step reads
#: four times more, up to :data:`_BACK_MAX`.
_BACK_FIRST = 32
_BACK_MAX = 4096
#: Sequences ``read_at`` reads through rather than locating the next one anew.
_AT_GAP = 32


def _numbered(events: list[EventRecord], head: int) -> list[EventRecord]:
    """An ``append_next`` batch (numbered ``1..n``) numbered from ``head + 1``."""
    return [_replace(event, sequence=head + event.sequence) for event in events]


def _hits(session: Session, events: list[EventRecord]) -> list[tuple[Branch, int] | None]:
    """Per event, the branch and sequence its id is stored at, from the loaded windows."""
    hits: list[tuple[Branch, int] | None] = [None] * len(events)
    for branch in session.branches.values():
        ids = branch.ids or {}
        for n, event in enumerate(events):
            sequence = ids.get(event.event_id)
            if sequence is not None:
                hits[n] = (branch, sequence)
    return hits


def _unseen(session: Session, events: list[EventRecord]) -> bool:
    """Whether every branch's id window is loaded and holds none of the batch's ids."""
    for branch in session.branches.values():
        ids = branch.ids
        if ids is None:
            return False
        for event in events:
            if event.event_id in ids:
                return False
    return True


class _Locked:
    """What :meth:`FileEventStore._locked` returns: a session held under its lock.

    A class, not an ``asynccontextmanager``: ``loop.shutdown_asyncgens()``, which
    frameworks' sync entry points call between runs, closes suspended async
    generators, and would release the lock under an operation still in flight.
    """

    __slots__ = ("_load", "_session", "_session_id", "_store")

    def __init__(self, store: FileEventStore, session_id: str, *, load: bool = True) -> None:
        self._store = store
        self._session_id = session_id
        self._load = load

    async def __aenter__(self) -> Session:
        store = self._store
        session = store._entry(self._session_id)
        session.users += 1
        store._busy += 1
        try:
            await session.lock.acquire()
            try:
                if self._load:
                    await store._load_session(session)
            except BaseException:
                session.lock.release()
                raise
        except BaseException:
            store._leave(session)
            raise
        self._session = session
        return session

    async def __aexit__(self, *exc_info: object) -> None:
        self._session.lock.release()
        self._store._leave(self._session)


class FileStoreStatistics(msgspec.Struct, frozen=True):
    """Counters of a :class:`FileEventStore`, for tests and monitoring.

    ``syncs`` counts ``fsync``/``syncfs`` calls made for appends: with group
    commit it grows slower than ``writes`` under concurrency.
    """

    rounds: int
    writes: int
    syncs: int
    cached_sessions: int


class FileEventStore(EventStore):
    """An :class:`EventStore` over JSONL files under ``root``.

    :param root: the store's directory, created (mode ``0o700``) if missing.
    :param durability: ``"fsync"`` (default): an append returns once its bytes are
        on stable storage; ``"write"``: once the OS has them (survives a process
        crash, not a power loss). Manifests and torn-tail cuts follow the same rule.
    :param read_only: open without the writer lock, beside a writer in this or
        another process; writes raise :class:`ReadOnlyStore` and heads are
        re-read from the files on every call, so :meth:`follow` sees new events.
    :param max_record_size: the largest encoded record accepted, in bytes.
    :param max_cached_sessions: sessions whose state stays cached; idle ones
        beyond it are evicted, least recently used first.
    :param ops: the system-call seam (:class:`FileOps`); tests pass one that
        fails on purpose.
    """

    #: Follow the writer by inotify where available (tests turn it off to poll).
    _inotify = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durability: Literal["fsync", "write"] = "fsync",
        read_only: bool = False,
        max_record_size: int = 1 << 20,
        max_cached_sessions: int = 1024,
        ops: FileOps | None = None,
    ) -> None:
        if durability not in ("fsync", "write"):
            raise ValueError(f"durability must be 'fsync' or 'write', got {durability!r}")
        if max_record_size < 1 or max_cached_sessions < 1:
            raise ValueError("max_record_size and max_cached_sessions must be positive")
        self.root = os.path.abspath(os.fspath(root))
        self.durability = durability
        self.read_only = read_only
        self.max_record_size = max_record_size
        self._max_sessions = max_cached_sessions
        self._ops = FileOps() if ops is None else ops
        self._sync = durability == "fsync"
        self._cache: OrderedDict[str, Session] = OrderedDict()
        self._lock_fd: int | None = None
        self._root_fd: int | None = None
        self._writer: Writer | None = None
        #: Operations inside :meth:`_locked`; ``close()`` lets them finish first.
        self._busy = 0
        self._quiet: asyncio.Future[None] | None = None
        self._feed: FeedFile | None = None
        #: The last position given out (loop), and the highest acknowledged one.
        self._position = 0
        self._visible = 0
        #: Sessions a crash cut short in deleting (their feed streams are blanked on open).
        self._buried: list[str] = []
        #: Records acknowledged in the round being delivered, for the listeners.
        self._round: list[EventRecord] = []
        #: A read-only store's task following the writer, while listeners listen.
        self._follower: asyncio.Task[None] | None = None
        self._follow_wanted = False
        #: The highest position a read-only store reported (where following resumes).
        self._seen: int | None = None
        self._consumer_states: dict[str, FileConsumerState] = {}
        #: New root branches waiting for the group on the I/O thread (:mod:`._roots`).
        self._roots: list[tuple[Session, list[EventRecord], asyncio.Future[list[EventRecord]]]] = []
        self._rooting = False

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else self.durability
        state = "closed" if self._closed else "open" if self._opened else "unopened"
        return f"<FileEventStore {self.root!r} {mode} {state}>"

    # -- lifecycle -------------------------------------------------------------

    async def _open(self) -> None:
        self._lock_fd, root_fd = await asyncio.to_thread(self._open_root)
        self._root_fd = root_fd
        self._writer = Writer(self._ops, sync=self._sync, sync_fd=root_fd, read_only=self.read_only)
        self._writer.start()
        # Weakly: the thread must not keep a forgotten store alive (its __del__ warns).
        round_done = weakref.WeakMethod(self._round_done)

        def on_round() -> None:
            method = round_done()
            if method is not None:
                method()

        self._writer.on_round = on_round
        self._feed = FeedFile(self._ops, self.root, read_only=self.read_only, sync=self._sync)
        try:
            self._position, self._visible = await self._io.call(self._open_feed)
        except BaseException:
            with contextlib.suppress(BaseException):
                await self._writer.stop()
            self._release()
            raise
        if self._follow_wanted:
            self._start_following()

    def _open_feed(self) -> tuple[int, int]:
        """Open the feed index (a writer creates and repairs it).

        :returns: the highest position it ever named (never given again) and
            the highest it holds now.
        """
        feed = self._feed
        assert feed is not None
        if self.read_only:
            feed.open()
            return 0, 0
        self._io.feed = feed
        try:
            if not feed.open():
                return 0, 0
            highest = feed.recover(self._io)
            # Sessions whose delete a crash cut short: their streams go now.
            for session_id in self._buried:
                feed.blank(feed.streams.drop(session_id))
            count = feed.count()
            visible = feed.entry(count - 1).position if count else 0
        except OSError as exc:
            feed.close()
            raise StorageError(f"cannot open the feed index: {exc.strerror}", exc.errno) from exc
        return highest, visible

    def _round_done(self) -> None:
        """After a round's callbacks, before its callers resume: tell the listeners."""
        records, self._round = self._round, []
        if not records:
            return
        self._visible = max(self._visible, records[-1].position)
        try:
            self._committed(records)
        except Exception as exc:  # a listener's bug must not lose the round's results
            asyncio.get_running_loop().call_exception_handler(
                {"message": "a store listener failed", "exception": exc}
            )

    def _open_root(self) -> tuple[int | None, int]:
        lock_fd = None
        if not self.read_only:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            lock_fd = acquire_lock(self.root)
        try:
            root_fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            if lock_fd is not None:
                # Sessions deleted when a crash struck: gone already, their files go now.
                self._buried = clear_tombstones(self._ops, root_fd)
                clear_copies(self._ops, root_fd)
        except OSError as exc:
            if lock_fd is not None:
                release_lock(lock_fd)
            raise StorageError(f"cannot open {self.root}: {exc.strerror}", exc.errno) from exc
        return lock_fd, root_fd

    async def _close(self) -> None:
        self._stop_following()
        for state in self._consumer_states.values():
            state.close()
        try:
            await self._settle()
        finally:
            try:
                if self._writer is not None:
                    await self._writer.stop()
            finally:
                self._release()

    async def _consumer_state(self, name: str) -> ConsumerState:
        if name not in self._consumer_states:
            self._consumer_states[name] = FileConsumerState(self.root, name, sync=self._sync)
        return self._consumer_states[name]

    async def _consumers(self) -> list[ConsumerInfo]:
        names = await asyncio.to_thread(list_consumers, self.root)
        return [await (await self._consumer_state(name)).info() for name in names]

    async def _settle(self) -> None:
        """Wait for the operations under way (new ones already raise StoreClosed).

        One may need several I/O steps (a merge's intent, its events, the intent
        cleared): it completes rather than stopping halfway.
        """
        while self._busy:
            self._quiet = asyncio.get_running_loop().create_future()
            await self._quiet

    def _release(self) -> None:
        if self._feed is not None:
            # A writer's thread closed it already; a reader's feed is closed here.
            self._feed.close()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None
        if self._lock_fd is not None:
            release_lock(self._lock_fd)
            self._lock_fd = None
        self._cache.clear()

    def __del__(self) -> None:
        # Warn first (the base class), then let go of the thread and the lock so
        # a forgotten store does not keep the root locked for the process's life.
        try:
            super().__del__()
        finally:
            if self._opened and not self._closed:
                if self._writer is not None:
                    self._writer.stop_nowait()
                if self._lock_fd is not None:
                    release_lock(self._lock_fd)
                    self._lock_fd = None

    def statistics(self) -> FileStoreStatistics:
        """Counters of the I/O thread and the session cache."""
        writer = self._writer
        return FileStoreStatistics(
            rounds=0 if writer is None else writer.rounds,
            writes=0 if writer is None else writer.writes,
            syncs=0 if writer is None else writer.syncs,
            cached_sessions=len(self._cache),
        )

    @property
    def _io(self) -> Writer:
        assert self._writer is not None
        return self._writer

    # -- sessions and branches ---------------------------------------------------

    def _entry(self, session_id: str) -> Session:
        sessions = self._cache
        session = sessions.get(session_id)
        if session is None:
            session = Session(session_id, f"{self.root}/{session_id}")
            sessions[session_id] = session
            # Evict idle sessions, least recently used first; busy ones move back.
            # A few tries per insert keep this O(1) when many sessions are busy.
            for _ in range(min(len(sessions) - self._max_sessions, 4)):
                oldest = next(iter(sessions.values()))
                if oldest.idle():
                    del sessions[oldest.session_id]
                else:
                    sessions.move_to_end(oldest.session_id)
        else:
            sessions.move_to_end(session_id)
        return session

    def _locked(self, session_id: str, *, load: bool = True) -> _Locked:
        """``async with``: the session, loaded (unless ``load`` is false), under its lock."""
        return _Locked(self, session_id, load=load)

    def _leave(self, session: Session) -> None:
        session.users -= 1
        self._busy -= 1
        if len(self._cache) > self._max_sessions:
            self._trim()
        if not self._busy and self._quiet is not None and not self._quiet.done():
            self._quiet.set_result(None)

    def _trim(self) -> None:
        """Evict idle sessions over the bound, least recently used first.

        Called as each operation leaves a session, so a burst of new sessions,
        all busy when they arrived, shrinks back to the bound as they finish.
        A few tries per call keep it O(1) while many sessions are busy.
        """
        sessions = self._cache
        for _ in range(min(len(sessions) - self._max_sessions, 8)):
            oldest = next(iter(sessions.values()))
            if oldest.idle():
                del sessions[oldest.session_id]
            else:
                sessions.move_to_end(oldest.session_id)

    async def _load_session(self, session: Session) -> None:
        if session.loaded and not self.read_only:
            return
        stamp, manifest, log = await self._io.call(self._read_manifest, session)
        if session.loaded and stamp == session.stamp:
            return
        before = session.branches
        if manifest is None and session.loaded:
            session.forget()  # a reader finds the session deleted by the writer
        session.stamp = stamp
        session.exists = manifest is not None
        if manifest is not None:
            session.apply(manifest, log)
        if self.read_only:
            # Files of branches the writer deleted (or deleted and made again) are
            # other files now: never read on through a descriptor of the old one.
            gone = [f"{n}.jsonl" for n, b in before.items() if session.branches.get(n) is not b]
            if gone:
                await self._io.call(self._forget_files, session.directory, gone)
        session.loaded = True
        if manifest is not None and manifest.pending_merge is not None:
            await self._settle_merge(session, manifest.pending_merge)
        if session.deleted and not self.read_only:
            await self._remove_deleted(session)

    def _forget_files(self, directory: str, names: list[str]) -> None:
        for name in names:
            self._io.forget(directory, name)

    def _read_manifest(self, session: Session) -> tuple[object, Manifest | None, BranchLog | None]:
        stamp = manifest_stamp(session.directory)
        if session.loaded and stamp == session.stamp:
            return stamp, None, None
        manifest, log = read_branches(self._ops, session.directory, session.session_id)
        if log is not None and log.torn and not self.read_only:
            # A line a kill cut short was never acknowledged: it goes, as a torn tail does.
            cut_log(self._ops, session.directory, log.size, sync=self._sync)
            log.torn = False
            stamp = manifest_stamp(session.directory)
        if manifest is None:
            # Without a manifest the session is new, unless its files prove otherwise.
            check_unnamed(self._io, session.directory, session.session_id)
        if not self.read_only:
            named = set() if manifest is None else {meta.branch_id for meta in manifest.branches}
            set_aside_leftovers(self._io, session.directory, named, sync=self._sync)
        return stamp, manifest, log

    async def _write_manifest(self, session: Session, fresh: Sequence[Branch] = ()) -> None:
        """Replace the manifest; ``fresh`` are branches it names for the first time.

        Their leftover files go aside in the same I/O step, before the manifest
        names them.
        """
        manifest = session.manifest()
        files = [branch.file for branch in fresh]
        log = session.log_size
        await self._io.call(self._replace_manifest, session.directory, manifest, files, log)
        session.exists = True
        # The manifest holds the log's lines now; the log was emptied.
        session.log_size = session.log_lines = 0

    def _replace_manifest(
        self, directory: str, manifest: Manifest, fresh: list[str], log: int
    ) -> None:
        assert self._root_fd is not None
        for name in fresh:
            set_aside(self._io, directory, name, sync=self._sync)
        write_manifest(self._ops, self._root_fd, directory, manifest, sync=self._sync)
        if log:
            # Synced: a line written over a stale one must never meet its remains.
            cut_log(self._ops, directory, 0, sync=self._sync)

    async def _log_branch(self, session: Session, branch: Branch, fresh: bool) -> None:
        """Record one branch's new manifest entry as a line of the branch log.

        For a session whose manifest exists; ``fresh``: the branch is new (its
        leftover file goes aside first, in the same I/O step).
        """
        n = session.log_last + 1
        data = log_line(n, branch.meta)
        files = [branch.file] if fresh else []
        offset = session.log_size
        try:
            await self._io.call(
                append_log, self._io, session.directory, offset, data, files, sync=self._sync
            )
        except BaseException:
            # The log may hold a torn line now: the next use reads it again (and cuts it).
            session.loaded = False
            raise
        session.log_size = offset + len(data)
        session.log_lines += 1
        session.log_last = n

    def _logs(self, session: Session) -> bool:
        """Whether the next branch change goes to the branch log (else the manifest)."""
        count = len(session.branches)
        return (
            session.exists
            and session.pending_merge is None
            and count >= LOG_FROM
            # Lines up to as many as the manifest's own branches: O(1) a fork, amortized.
            and session.log_lines < max(COMPACT_AFTER, count - session.log_lines)
        )

    async def _load_branch(self, session: Session, branch: Branch) -> None:
        """Find the branch's head from its file (a writer repairs a torn tail).

        :raises CorruptLog: if the file is damaged, is a symbolic link, or holds
            less than the manifest records it reached.
        """
        if branch.loaded and not self.read_only:
            return
        known = branch.meta.known_head
        pending = session.pending_merge
        if pending is not None and pending.target == branch.branch_id:
            # The intent's own target_head is the bound; its repair checks it.
            known = min(known, pending.target_head)
        try:
            found = await self._io.call(
                open_tail,
                self._io,
                session.directory,
                branch.file,
                session.session_id,
                branch.branch_id,
                branch.fork_sequence,
                branch.size if branch.loaded else -1,
                repair=not self.read_only,
                sync=self._sync,
                known_head=known,
            )
        except StorageError as exc:
            if exc.errno != errno.ELOOP:
                raise
            path = f"{session.directory}/{branch.file}"
            raise CorruptLog(path, 0, LINK_REFUSED) from exc
        if found is not None:
            branch.reset(*found)
        branch.loaded = True

    async def _load_lineage(self, session: Session, branch_id: str) -> None:
        current: str | None = branch_id
        while current is not None:
            branch = session.branches[current]
            await self._load_branch(session, branch)
            current = branch.parent_branch
        self._check_forks(session, ancestors(session.branches, branch_id))

    def _check_forks(self, session: Session, names: Sequence[str]) -> None:
        """Each loaded branch's fork point must be within its loaded parent's history.

        A fork is made at a durable head, so a parent ending before it lost
        acknowledged events; reading on would stitch a history with a gap.

        :raises CorruptLog: naming the manifest and both branches.
        """
        branches = session.branches
        for name in names:
            branch = branches[name]
            parent = None if branch.parent_branch is None else branches[branch.parent_branch]
            if parent is None or not (branch.loaded and parent.loaded):
                continue
            if branch.fork_sequence > parent.head:
                raise CorruptLog(
                    f"{session.directory}/{MANIFEST}",
                    1,
                    f"{name!r} forks {parent.branch_id!r} at {branch.fork_sequence}, beyond "
                    f"its head {parent.head}: acknowledged events of {parent.branch_id!r} "
                    "are missing",
                )

    async def _settle_merge(self, session: Session, pending: PendingMerge) -> None:
        """Finish the bookkeeping of a merge a crash interrupted, or undo it.

        Should that fail, the session loads again on its next use and tries
        again: nothing is written to it while the intent stands unresolved.

        :raises CorruptLog: if the target holds less than it did before the merge.
        """
        try:
            await self._resolve_merge(session, pending)
        except BaseException:
            session.loaded = False
            raise

    async def _resolve_merge(self, session: Session, pending: PendingMerge) -> None:
        target = session.branches[pending.target]
        source = session.branches[pending.source]
        await self._load_branch(session, target)
        if target.head < pending.target_head:
            raise CorruptLog(
                f"{session.directory}/{target.file}",
                0,
                f"ends at sequence {target.head}, but held {pending.target_head} "
                f"when {pending.source!r} began merging into it",
            )
        arrived = await self._merge_arrived(session, pending, source)
        done = arrived and target.head >= pending.target_head + pending.count
        if self.read_only:
            if not done:
                source.meta.merged_into = None
            return
        if not done:
            if arrived:
                # Part of a merge written before batches carried marks.
                await self._io.call(
                    cut_back,
                    self._io,
                    session.directory,
                    target.file,
                    pending.target_size,
                    sync=self._sync,
                )
                target.reset(pending.target_head, pending.target_size)
            # Records past the intent that are not the merge's were acknowledged
            # after it (a store that went on writing): they stay.
            source.meta.merged_into = None
        session.pending_merge = None
        await self._write_manifest(session)

    async def _merge_arrived(self, session: Session, pending: PendingMerge, source: Branch) -> bool:
        """Whether the record after the target's old head is the merge's first.

        The head alone cannot tell: appends acknowledged after the intent (a
        store that kept writing when it could not clear it) move it as well.
        """
        after = pending.target_head + 1
        if session.branches[pending.target].head < after:
            return False
        first = await self._read_list(session, pending.target, after, after, 1)
        origin = first[0].metadata.get("merged_from") if first else None
        return (
            isinstance(origin, dict)
            and origin.get("branch_id") == pending.source
            and origin.get("sequence") == source.fork_sequence + 1
        )

    def _implicit_main(self, session: Session, branch_id: str) -> Branch:
        """The branch, or a fresh root ``main`` (registered once a manifest names it).

        A fresh ``main`` is empty whatever its file holds: nothing the manifest
        does not name was acknowledged (the file goes aside when it is named).

        :raises BranchNotFound: for any other unknown branch.
        """
        branch = session.branches.get(branch_id)
        if branch is not None:
            return branch
        if branch_id != MAIN:
            raise BranchNotFound(session.session_id, branch_id)
        branch = Branch(BranchMeta(branch_id=MAIN, created_at=utc_now()))
        branch.loaded = True
        return branch

    async def _drain(self, branch: Branch) -> None:
        while branch.inflight:
            waiter = asyncio.get_running_loop().create_future()
            branch.waiters.append(waiter)
            await waiter

    # -- writes ----------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStore()

    def _open_branch(self, events: list[EventRecord]) -> tuple[Session, Branch] | None:
        """The loaded, open branch a batch of new ids can go to without the lock, if any."""
        first = events[0]
        session = self._cache.get(first.session_id)
        if session is None or not session.loaded or session.lock.locked():
            return None
        branch = session.branches.get(first.branch_id)
        if branch is None or not branch.loaded or branch.closed or not _unseen(session, events):
            return None
        return session, branch

    async def _append_batch(self, events: list[EventRecord]) -> list[EventRecord]:
        self._check_writable()
        first = events[0]
        fast = self._open_branch(events)
        if fast is not None and first.sequence == fast[1].pending_head + 1:
            stored, pending = self._submit(*fast, events)
            if pending is not None:
                await pending
            return stored
        async with self._locked(first.session_id) as session:
            stored, written = await self._append_locked(session, events)
        if written is not None:
            await written
        return stored

    async def _append_next(self, events: list[EventRecord]) -> list[EventRecord]:
        # Numbered from the pending head at acceptance: concurrent calls on one
        # branch never conflict and share the I/O thread's rounds.
        self._check_writable()
        first = events[0]
        fast = self._open_branch(events)
        if fast is not None:
            stored, pending = self._submit(*fast, _numbered(events, fast[1].pending_head))
            if pending is not None:
                await pending
            return stored
        async with self._locked(first.session_id) as session:
            replayed = await self._replay(session, events)
            if replayed is not None:
                return replayed
            branch = session.branches.get(first.branch_id)
            if branch is not None:
                await self._load_branch(session, branch)
            head = 0 if branch is None else branch.pending_head
            stored, written = await self._append_locked(session, _numbered(events, head))
        if written is not None:
            await written
        return stored

    async def _append_locked(
        self, session: Session, events: list[EventRecord]
    ) -> tuple[list[EventRecord], asyncio.Future[None] | None]:
        """The slow path: the records to return, and the write to await if any."""
        first = events[0]
        stored = await self._replay(session, events)
        if stored is not None:
            return stored, None
        branch = session.branches.get(first.branch_id)
        if branch is None:
            if first.branch_id != MAIN:
                # Only main comes into being by an append: a typo starts nothing.
                raise BranchNotFound(session.session_id, first.branch_id)
            if first.sequence != 1:
                return resolve_retry([], events, 0), None  # raises: nothing is stored
            return await self._create_root(session, events), None
        await self._load_branch(session, branch)
        stored = events
        if first.sequence != branch.pending_head + 1:
            await self._drain(branch)
            if first.sequence != branch.head + 1:
                stored = await self._read_list(
                    session, first.branch_id, first.sequence, events[-1].sequence, None
                )
                return resolve_retry(stored, events, branch.head), None
        if branch.closed:
            raise BranchClosed(session.session_id, branch.branch_id, branch.meta.merged_into)
        return self._submit(session, branch, events)

    async def _replay(
        self, session: Session, events: list[EventRecord]
    ) -> list[EventRecord] | None:
        """The stored records if the batch was written before (see :func:`replay`).

        Loads the id window of every branch of the session first.
        """
        for branch in list(session.branches.values()):
            if branch.ids is None:
                await self._load_branch(session, branch)
                await self._drain(branch)
                branch.ids = await self._io.call(
                    self._recent_ids, session.directory, branch, session.session_id
                )
        hits = _hits(session, events)
        if not any(hits):
            return None
        # A hit may still be in flight: wait, and see whether it failed meanwhile.
        for branch in {hit[0] for hit in hits if hit is not None}:
            await self._drain(branch)
        hits = _hits(session, events)
        found: list[EventRecord | None] = []
        for hit in hits:
            if hit is None:
                found.append(None)
            else:
                branch, sequence = hit
                stored = await self._read_list(session, branch.branch_id, sequence, sequence, 1)
                found.append(stored[0] if stored else None)
        return replay(events, found)

    def _recent_ids(self, directory: str, branch: Branch, session_id: str) -> dict[str, int]:
        if branch.head <= branch.fork_sequence:
            return {}
        path = f"{directory}/{branch.file}"
        handle = self._io.handle(directory, branch.file)
        if handle is None:
            raise StorageError(f"{path} disappeared")
        return recent_ids(
            self._io.ops,
            handle.fd,
            path,
            branch.index,
            session_id,
            branch.branch_id,
            branch.fork_sequence,
            branch.head,
            branch.size,
        )

    async def _create_root(self, session: Session, events: list[EventRecord]) -> list[EventRecord]:
        """Write the first events of a new root branch, then name it in the manifest.

        Both in one call on the I/O thread, so a ``close()`` either lets the
        whole of it finish or stops it before it starts. Should a crash strike
        between the two, the file is an orphan the manifest does not name:
        invisible, and moved aside by the next attempt (its feed entries are
        cut by the next open). Concurrent new sessions go as one group, with
        the syncs of one (:mod:`._roots`). Cancelling the caller does not
        stop the write: the session lock stays held until it is done, so the
        session's state never disagrees with its files.
        """
        future: asyncio.Future[list[EventRecord]] = asyncio.get_running_loop().create_future()
        self._roots.append((session, events, future))
        if not self._rooting:
            self._start_roots()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([future])
            raise

    def _start_roots(self) -> None:
        """Hand every new root branch waiting to the I/O thread as one group.

        On the loop, with no await between the positions given and the call
        queued: positions follow the queue.
        """
        waiting, self._roots = self._roots, []
        jobs: list[RootJob] = []
        for session, events, future in waiting:
            try:
                jobs.append(self._root_job(session, events, future))
            except BaseException as exc:  # InvalidEvent: too large; no position used
                future.set_exception(exc)
        if not jobs:
            return
        fn = self._write_roots_io
        try:
            self._io.call_done(functools.partial(self._roots_done, jobs), fn, jobs)
        except BaseException as exc:
            for job in jobs:
                job.future.set_exception(exc)
            return
        self._rooting = True

    def _root_job(
        self, session: Session, events: list[EventRecord], future: asyncio.Future[list[EventRecord]]
    ) -> RootJob:
        branch_id = events[0].branch_id
        stamped = self._stamp(session.session_id, branch_id, events, 0)
        # The manifest is written after the events: it may record them as reached.
        meta = BranchMeta(branch_id=branch_id, created_at=utc_now(), known_head=events[-1].sequence)
        branch = Branch(meta)
        session.branches[branch_id] = branch
        try:
            manifest = session.manifest()
        finally:
            del session.branches[branch_id]
        return RootJob(session, branch, future, stamped, manifest)

    def _write_roots_io(self, jobs: list[RootJob]) -> None:
        root_fd, feed = self._root_fd, self._feed
        assert root_fd is not None and feed is not None
        if self._sync and self._ops.has_syncfs():
            write_roots(self._io, root_fd, feed, jobs)
            return
        for job in jobs:
            try:
                self._write_root(job.directory, job.branch.file, job.data, job.manifest, job.part)
            except OSError as exc:
                job.error = storage_error(exc, "file store I/O failed")
            except BaseException as exc:
                job.error = exc

    def _roots_done(self, jobs: list[RootJob], error: BaseException | None) -> None:
        """On the loop, before the round's listeners: adopt each new branch or fail its caller."""
        self._rooting = False
        for job in jobs:
            session, branch, failed = job.session, job.branch, error or job.error
            if failed is not None:
                # The disk may name it (a failed last sync): the next use reads it again.
                session.loaded = False
                job.future.set_exception(failed)
                continue
            stored = job.stored
            branch.loaded = True
            branch.reset(stored[-1].sequence, len(job.data))
            branch.ids = {event.event_id: event.sequence for event in stored}
            session.branches[branch.branch_id] = branch
            session.exists = True
            self._round.extend(stored)
            job.future.set_result(stored)
        if self._roots:
            self._start_roots()

    def _write_root(
        self, directory: str, name: str, data: bytes, manifest: Manifest, part: FeedPart
    ) -> None:
        root_fd = self._root_fd
        assert root_fd is not None
        prepare_root(self._io, root_fd, directory, name, sync=self._sync)
        feed = self._feed
        assert feed is not None
        region = feed.append([part])
        try:
            # The manifest's directory sync makes the new file's entry durable too.
            self._io.write_now(directory, name, data, sync_directory=False)
            if self._sync:
                feed.sync()
            write_manifest(self._ops, root_fd, directory, manifest, sync=self._sync)
        except BaseException:
            if region is not None:
                feed.keep(region, [], self._sync)
            raise

    def _stamp(
        self, session_id: str, branch_id: str, events: list[EventRecord], offset: int
    ) -> tuple[list[EventRecord], bytes, FeedPart]:
        """Give ``events`` the next positions: the records, their bytes, their feed entries.

        On the loop, with no await before the write is queued: positions follow
        the queue, which is the order rounds commit in.

        :raises InvalidEvent: for a record above ``max_record_size`` (no position is used).
        """
        first = self._position + 1
        assert self._feed is not None
        if len(events) == 1:
            stored = [_replace(events[0], position=first)]
            data = encode_batch(stored, self.max_record_size)
            number, raw = self._feed.streams.number(session_id, branch_id)
            self._position = first
            entry = entry_bytes(first, number, len(data), offset, stored[0].sequence)
            return stored, data, FeedPart(entry, number, raw)
        stored = [_replace(event, position=p) for p, event in enumerate(events, first)]
        ends: list[int] = []
        data = encode_batch(stored, self.max_record_size, ends)
        number, raw = self._feed.streams.number(session_id, branch_id)
        entries = entries_bytes(first, number, offset, ends, map(_sequence_of, stored))
        self._position = stored[-1].position
        return stored, data, FeedPart(entries, number, raw)

    def _submit(
        self, session: Session, branch: Branch, events: list[EventRecord]
    ) -> tuple[list[EventRecord], asyncio.Future[None] | None]:
        """Stamp and hand ``events`` to the I/O thread: the records, and the write to
        await (``None``: already written, see :meth:`Writer.write`).

        :raises StorageError: if a write made inline failed (``done`` undid it).
        """
        offset = branch.pending_size
        stored, data, part = self._stamp(session.session_id, branch.branch_id, events, offset)
        first = events[0].sequence
        last = events[-1].sequence
        generation = branch.generation
        branch.pending_size = offset + len(data)
        branch.pending_head = last
        branch.inflight += 1
        session.inflight += 1
        remember(branch, events)

        def done(error: BaseException | None) -> None:
            session.inflight -= 1
            if error is None:
                branch.head = last
                branch.size = offset + len(data)
                if first - branch.noted >= SPACING:
                    branch.index.note(first, offset)
                    branch.noted = first
                self._round.extend(stored)
            else:
                forget(branch, events)
                if generation == branch.generation:
                    # Later writes were built on this one and fail with it: start
                    # again from what is durable.
                    branch.generation += 1
                    branch.pending_head = branch.head
                    branch.pending_size = branch.size
            branch.inflight -= 1
            if not branch.inflight:
                branch.wake()

        return stored, self._io.write(session.directory, branch.file, offset, data, done, part)

    async def _create_branch(
        self, session_id: str, branch_id: str, from_branch: str, fork_sequence: int | None
    ) -> BranchInfo:
        self._check_writable()
        async with self._locked(session_id) as session:
            if branch_id == MAIN or branch_id in session.branches:
                raise BranchExists(session_id, branch_id)
            parent = self._implicit_main(session, from_branch)
            await self._load_branch(session, parent)
            await self._drain(parent)
            if parent.closed:
                raise BranchClosed(session_id, from_branch, parent.meta.merged_into)
            at = parent.head if fork_sequence is None else fork_sequence
            if at > parent.head:
                raise InvalidBranchOperation(
                    session_id,
                    branch_id,
                    f"fork_sequence {at} is beyond the head {parent.head} of {from_branch!r}",
                )
            meta = BranchMeta(
                branch_id=branch_id,
                parent_branch=from_branch,
                fork_sequence=at,
                created_at=utc_now(),
            )
            branch = Branch(meta)
            added = [name for name in (from_branch, branch_id) if name not in session.branches]
            logged = added == [branch_id] and self._logs(session)
            session.branches.setdefault(from_branch, parent)
            session.branches[branch_id] = branch
            try:
                if logged:
                    await self._log_branch(session, branch, fresh=True)
                else:
                    await self._write_manifest(session, [session.branches[n] for n in added])
            except BaseException:
                for name in added:
                    del session.branches[name]
                raise
            # Its file is empty or absent (set aside just now): nothing to read.
            branch.loaded = True
            return branch.info(session_id)

    async def _merge_branch(
        self, session_id: str, source_branch: str, target_branch: str
    ) -> MergeResult:
        self._check_writable()
        # Shielded: once the merge has recorded its intent it must run to the end,
        # whatever happens to the caller.
        task = asyncio.ensure_future(self._merge(session_id, source_branch, target_branch))
        return await asyncio.shield(task)

    async def _merge(self, session_id: str, source_id: str, target_id: str) -> MergeResult:
        async with self._locked(session_id) as session:
            source = self._implicit_main(session, source_id)
            target = self._implicit_main(session, target_id)
            graph = {**session.branches, source_id: source, target_id: target}
            check_merge(graph, session_id, source_id, target_id)
            for name, branch in ((source_id, source), (target_id, target)):
                if branch.closed:
                    raise BranchClosed(session_id, name, branch.meta.merged_into)
            await self._load_branch(session, source)
            await self._load_branch(session, target)
            await self._drain(source)
            await self._drain(target)
            own = await self._read_own_all(session, source)
            records = merged_records(own, target_id, target.head)
            if records:
                # Checked before the intent is written (the write encodes again, positioned).
                encode_batch(records, self.max_record_size)
            added = [name for name in (source_id, target_id) if name not in session.branches]
            session.branches.update({source_id: source, target_id: target})
            source.meta.merged_into = target_id
            if records:
                session.pending_merge = PendingMerge(
                    source=source_id,
                    target=target_id,
                    target_head=target.head,
                    target_size=target.size,
                    count=len(records),
                )
            try:
                await self._write_manifest(session, [session.branches[n] for n in added])
            except BaseException:
                source.meta.merged_into = None
                session.pending_merge = None
                for name in added:
                    del session.branches[name]
                raise
            if not records:
                return MergeResult(source_id, target_id, 0, target.head)
            try:
                _, written = self._submit(session, target, records)
                if written is not None:
                    await written
            except BaseException:
                # Nothing reached the target: reopen the source. If this manifest
                # write fails too, the next open sees the intent and undoes it.
                source.meta.merged_into = None
                session.pending_merge = None
                with contextlib.suppress(StorageError):
                    await self._write_manifest(session)
                raise
            session.pending_merge = None
            # The merge is durable now. Should clearing the intent fail, the next
            # open finds the target complete and confirms it.
            with contextlib.suppress(StorageError):
                await self._write_manifest(session)
            return MergeResult(source_id, target_id, len(records), target.head)

    # -- reads -----------------------------------------------------------------

    def _read_own(
        self,
        session: Session,
        branch: Branch,
        fork: int,
        head: int,
        size: int,
        first: int,
        last: int,
        cap: int,
        point: tuple[int, int] | None,
    ) -> tuple[list[EventRecord], tuple[int, int] | None]:
        """Own events ``first..last`` (at most ``cap``), on the I/O thread.

        Every record read on the way is checked, not only those returned.

        :returns: the records and where to resume, ``None`` when done.
        :raises CorruptLog: for a line that is not the record due there.
        """
        writer = self._io
        directory = session.directory
        path = f"{directory}/{branch.file}"
        handle = writer.handle(directory, branch.file)
        if handle is None:
            raise StorageError(f"{path} disappeared")
        if point is None:
            point = branch.index.locate(
                writer.ops, handle.fd, path, first, (fork + 1, 0), (head + 1, size)
            )
        sequence, offset = point
        per_line = size / max(head - fork, 1)
        out: list[EventRecord] = []
        budget = _READ_BUDGET
        while offset < size and sequence <= last and len(out) < cap and budget > 0:
            want = int((last - sequence + 1) * per_line * 1.1) + 1024
            owner = Owner(session.session_id, branch.branch_id, sequence)
            records, after = read_chunk(writer.ops, handle.fd, path, offset, size, owner, want)
            budget -= after - offset
            low = max(0, first - sequence)
            high = min(len(records), last - sequence + 1, low + cap - len(out))
            out.extend(records[low:high])
            sequence += len(records)
            offset = after
            branch.index.note(sequence, offset)
        finished = offset >= size or sequence > last or len(out) >= cap
        return out, None if finished else (sequence, offset)

    async def _segments(
        self, session_id: str, branch_id: str, start: int, end: int | None
    ) -> tuple[Session, list[tuple[Branch, int, int, int, int, int]]]:
        async with self._locked(session_id) as session:
            if branch_id not in session.branches:
                return session, []
            await self._load_lineage(session, branch_id)
            return session, [
                (branch, first, last, branch.fork_sequence, branch.head, branch.size)
                for owner, first, last in segments(session.branches, branch_id, start, end)
                for branch in (session.branches[owner],)
            ]

    async def _stream(
        self,
        session: Session,
        parts: list[tuple[Branch, int, int, int, int, int]],
        limit: int | None,
    ) -> AsyncIterator[list[EventRecord]]:
        remaining = limit
        for branch, first, last, fork, head, size in parts:
            point: tuple[int, int] | None = None
            while remaining is None or remaining > 0:
                cap = last - first + 1 if remaining is None else remaining
                records, point = await self._io.call(
                    self._read_own,
                    session,
                    branch,
                    fork,
                    head,
                    size,
                    first,
                    last,
                    cap,
                    point,
                )
                if records:
                    yield records
                if remaining is not None:
                    remaining -= len(records)
                if point is None:
                    break

    async def _read_list(
        self, session: Session, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> list[EventRecord]:
        # Called with the session lock held: no re-locking.
        if branch_id not in session.branches:
            return []
        await self._load_lineage(session, branch_id)
        parts = [
            (branch, first, last, branch.fork_sequence, branch.head, branch.size)
            for owner, first, last in segments(session.branches, branch_id, start, end)
            for branch in (session.branches[owner],)
        ]
        return [r async for chunk in self._stream(session, parts, limit) for r in chunk]

    # -- copies ------------------------------------------------------------------

    async def _copy_session(
        self, source: str, target: str, branch_id: str | None, to_sequence: int | None
    ) -> list[BranchInfo]:
        self._check_writable()
        if source == target:
            async with self._locked(source) as session:
                if session.exists:
                    raise BranchExists(target, MAIN)
                raise BranchNotFound(source, MAIN if branch_id is None else branch_id)
        # Two session locks, always taken in id order: two copies never deadlock.
        low, high = sorted((source, target))
        async with self._locked(low) as first, self._locked(high) as second:
            src, dst = (first, second) if low == source else (second, first)
            return await self._copy_locked(src, dst, branch_id, to_sequence)

    async def _copy_locked(
        self, src: Session, dst: Session, branch_id: str | None, to_sequence: int | None
    ) -> list[BranchInfo]:
        """Read the source, then write the target in one step on the I/O thread."""
        if dst.exists:
            raise BranchExists(dst.session_id, MAIN)
        if not src.exists or (branch_id is not None and branch_id not in src.branches):
            raise BranchNotFound(src.session_id, MAIN if branch_id is None else branch_id)
        now = utc_now()
        metas: list[BranchMeta] = []
        records: list[EventRecord] = []
        if branch_id is None:
            for branch in list(src.branches.values()):
                await self._load_branch(src, branch)
                await self._drain(branch)
            self._check_forks(src, list(src.branches))
            infos = [b.info(src.session_id) for b in src.branches.values()]
            for name in parents_first(infos):
                branch = src.branches[name]
                meta = branch.meta
                metas.append(
                    BranchMeta(
                        branch_id=name,
                        parent_branch=meta.parent_branch,
                        fork_sequence=meta.fork_sequence,
                        created_at=now,
                        merged_into=meta.merged_into,
                        closed_at=meta.closed_at,
                        known_head=branch.head,
                    )
                )
                own = await self._read_own_all(src, branch)
                records.extend(_replace(r, session_id=dst.session_id) for r in own)
        else:
            branch = src.branches[branch_id]
            await self._load_lineage(src, branch_id)
            await self._drain(branch)
            end = branch.head if to_sequence is None else to_sequence
            if end > branch.head:
                raise InvalidBranchOperation(
                    src.session_id,
                    branch_id,
                    f"to_sequence {end} is beyond the head {branch.head} of {branch_id!r}",
                )
            history = await self._read_list(src, branch_id, 1, end, None) if end else []
            records = [_replace(r, session_id=dst.session_id, branch_id=MAIN) for r in history]
            metas.append(BranchMeta(branch_id=MAIN, created_at=now, known_head=end))
        # From here to the hand-off, no await: positions follow the I/O queue.
        stored, files, parts = self._stamp_copy(dst.session_id, records)
        manifest = Manifest(session_id=dst.session_id, branches=metas)

        def done(error: BaseException | None) -> None:
            if error is None:
                self._round.extend(stored)

        try:
            await self._io.call_done(
                done, self._write_copy, dst.directory, dst.session_id, files, manifest, parts
            )
        finally:
            # Whatever happened, the next use reads the target from the disk.
            dst.forget()
        await self._load_session(dst)
        for branch in dst.branches.values():
            await self._load_branch(dst, branch)
        return [dst.branches[name].info(dst.session_id) for name in sorted(dst.branches)]

    def _stamp_copy(
        self, session_id: str, records: list[EventRecord]
    ) -> tuple[list[EventRecord], list[tuple[str, bytes]], list[FeedPart]]:
        """Positions for a copy's records, in the source's write order; files and feed.

        :raises InvalidEvent: for a record above ``max_record_size`` (no position is used).
        """
        assert self._feed is not None
        ordered = sorted(records, key=lambda r: r.position)
        first = self._position + 1
        stored = [_replace(r, position=p) for p, r in enumerate(ordered, first)]
        by_branch: dict[str, list[EventRecord]] = {}
        for record in stored:
            by_branch.setdefault(record.branch_id, []).append(record)
        files: list[tuple[str, bytes]] = []
        parts: list[FeedPart] = []
        entries: list[tuple[int, bytes]] = []
        for name, own in by_branch.items():
            ends: list[int] = []
            data = encode_batch(own, self.max_record_size, ends)
            number, raw = self._feed.streams.number(session_id, name)
            # An entry-less part names the stream; the entries follow in position order.
            parts.append(FeedPart(b"", number, raw))
            start = 0
            for record, end in zip(own, ends, strict=True):
                entries.append(
                    (
                        record.position,
                        entry_bytes(record.position, number, end - start, start, record.sequence),
                    )
                )
                start = end
            files.append((f"{name}.jsonl", data))
        if not entries:
            return stored, files, []
        entries.sort()
        parts.append(
            FeedPart(b"".join(e for _, e in entries), parts[0].stream, parts[0].stream_entry)
        )
        self._position = stored[-1].position
        return stored, files, parts

    def _write_copy(
        self,
        directory: str,
        session_id: str,
        files: list[tuple[str, bytes]],
        manifest: Manifest,
        parts: list[FeedPart],
    ) -> None:
        """Write a copied session under a hidden name, then rename it into place.

        Each branch file is one write and one sync, the manifest comes last, then
        the feed entries; the rename of the directory is the commit. A failure
        removes what was written and cuts the feed entries; a crash before the
        rename leaves a hidden directory the next open removes (and entries whose
        files are missing, which the feed's recovery cuts).
        """
        ops = self._ops
        root_fd = self._root_fd
        feed = self._feed
        assert root_fd is not None and feed is not None
        staging = f"{COPY_PREFIX}{session_id}.{secrets.token_hex(6)}"
        self._io.forget(directory)
        # A directory without a manifest holds only what was never acknowledged.
        bury(ops, root_fd, session_id, sync=self._sync)
        region = None
        renamed = False
        try:
            ops.mkdir(staging, 0o700, dir_fd=root_fd)
            dir_fd = ops.open(staging, os.O_RDONLY | DIRECTORY | NOFOLLOW, dir_fd=root_fd)
            try:
                for name, data in files:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW
                    fd = ops.open(name, flags, 0o600, dir_fd=dir_fd)
                    try:
                        view = memoryview(data)
                        offset = 0
                        while offset < len(data):
                            offset += ops.pwrite(fd, view[offset:], offset)
                        if self._sync:
                            self._io.syncs += 1
                            ops.fsync(fd)
                    finally:
                        ops.close(fd)
                    self._io.writes += 1
            finally:
                ops.close(dir_fd)
            # Syncs the directory too: the files' entries are durable with it.
            write_manifest(ops, root_fd, f"{self.root}/{staging}", manifest, sync=self._sync)
            if parts:
                region = feed.append(parts)
                if self._sync:
                    feed.sync()
            ops.rename(staging, session_id, dir_fd=root_fd)
            renamed = True
            if self._sync:
                ops.fsync(root_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                if renamed:
                    ops.rename(session_id, staging, dir_fd=root_fd)
                    renamed = False
                remove_tree(ops, root_fd, staging)
            if region is not None and not renamed:
                feed.keep(region, [], self._sync)
            raise

    # -- lookups -----------------------------------------------------------------

    async def _lookup(self, session: Session) -> Lookup:
        """The session's lookup index, caught up with every branch (lock held).

        Built from the files on first use; afterwards only what each branch
        gained since is read (see :mod:`._lookup`).
        """
        for branch in list(session.branches.values()):
            await self._load_branch(session, branch)
        lookup = session.lookup
        if lookup is None or lookup.stale(session.branches):
            lookup = session.lookup = Lookup()
        for branch in list(session.branches.values()):
            done = lookup.indexed(branch)
            head, size = branch.head, branch.size
            if head > done:
                part = (branch, done + 1, head, branch.fork_sequence, head, size)
                async for chunk in self._stream(session, [part], None):
                    lookup.add(chunk)
            lookup.mark(branch, head, size)
        return lookup

    async def _record_at(
        self, session: Session, branch_id: str, sequence: int
    ) -> EventRecord | None:
        if branch_id not in session.branches:
            return None
        found = await self._read_list(session, branch_id, sequence, sequence, 1)
        return found[0] if found else None

    async def _get_event(self, session_id: str, event_id: str) -> EventRecord | None:
        async with self._locked(session_id) as session:
            if not session.exists:
                return None
            hit = (await self._lookup(session)).ids.get(event_id)
            if hit is None:
                return None
            record = await self._record_at(session, *hit)
            return record if record is not None and record.event_id == event_id else None

    async def _get_by_key(self, session_id: str, key: str) -> EventRecord | None:
        async with self._locked(session_id) as session:
            if not session.exists:
                return None
            hit = (await self._lookup(session)).by_key.get(key)
            if hit is None:
                return None
            return await self._record_at(session, hit[1], hit[2])

    async def _read_last(
        self,
        session_id: str,
        branch_id: str,
        kinds: frozenset[str] | None,
        limit: int,
        end: int | None,
    ) -> list[EventRecord]:
        async with self._locked(session_id) as session:
            if branch_id not in session.branches:
                return []
            await self._load_lineage(session, branch_id)
            out: list[EventRecord] = []
            step = _BACK_FIRST
            for owner, first, last in reversed(segments(session.branches, branch_id, 1, end)):
                branch = session.branches[owner]
                high = last
                while high >= first:
                    low = max(first, high - step + 1)
                    step = min(step * 4, _BACK_MAX)
                    part = (branch, low, high, branch.fork_sequence, branch.head, branch.size)
                    chunk = [r async for c in self._stream(session, [part], None) for r in c]
                    for record in reversed(chunk):
                        if kinds is None or record.kind in kinds:
                            out.append(record)
                            if len(out) >= limit:
                                return out
                    high = low - 1
            return out

    async def _read_at(
        self, session_id: str, branch_id: str, sequences: list[int]
    ) -> dict[int, EventRecord]:
        async with self._locked(session_id) as session:
            if branch_id not in session.branches:
                return {}
            await self._load_lineage(session, branch_id)
            found: dict[int, EventRecord] = {}
            parts = segments(session.branches, branch_id, sequences[0], sequences[-1])
            for owner, first, last in parts:
                branch = session.branches[owner]
                inside = [s for s in sequences if first <= s <= last]
                # Runs of near sequences are read through, far ones located anew.
                runs: list[list[int]] = []
                for sequence in inside:
                    if runs and sequence - runs[-1][-1] <= _AT_GAP:
                        runs[-1].append(sequence)
                    else:
                        runs.append([sequence])
                for run in runs:
                    part = (branch, run[0], run[-1], branch.fork_sequence, branch.head, branch.size)
                    wanted = set(run)
                    async for chunk in self._stream(session, [part], None):
                        found.update((r.sequence, r) for r in chunk if r.sequence in wanted)
            return found

    async def _read_own_all(self, session: Session, branch: Branch) -> list[EventRecord]:
        parts = [
            (
                branch,
                branch.fork_sequence + 1,
                branch.head,
                branch.fork_sequence,
                branch.head,
                branch.size,
            )
        ]
        if branch.head <= branch.fork_sequence:
            return []
        return [r async for chunk in self._stream(session, parts, None) for r in chunk]

    async def _read(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> list[EventRecord]:
        session, parts = await self._segments(session_id, branch_id, start, end)
        out: list[EventRecord] = []
        async for chunk in self._stream(session, parts, limit):
            out.extend(chunk)
        return out

    async def _iter_events(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> AsyncIterator[EventRecord]:
        session, parts = await self._segments(session_id, branch_id, start, end)
        async for chunk in self._stream(session, parts, limit):
            for record in chunk:
                yield record

    async def _head(self, session_id: str, branch_id: str) -> int:
        session = self._cache.get(session_id)
        if session is not None and session.loaded and not self.read_only:
            branch = session.branches.get(branch_id)
            if branch is not None and branch.loaded:
                return branch.head
        async with self._locked(session_id) as session:
            branch = session.branches.get(branch_id)
            if branch is None:
                return 0
            await self._load_branch(session, branch)
            return branch.head

    async def _list_branches(self, session_id: str) -> list[BranchInfo]:
        async with self._locked(session_id) as session:
            if not session.exists:
                return []
            for branch in session.branches.values():
                await self._load_branch(session, branch)
            self._check_forks(session, list(session.branches))
            return [session.branches[name].info(session_id) for name in sorted(session.branches)]

    async def _branch_info(self, session_id: str, branch_id: str) -> BranchInfo:
        async with self._locked(session_id) as session:
            branch = session.branches.get(branch_id)
            if branch is None:
                if branch_id != MAIN:
                    raise BranchNotFound(session_id, branch_id)
                return Branch(BranchMeta(branch_id=MAIN, created_at=utc_now())).info(session_id)
            await self._load_branch(session, branch)
            return branch.info(session_id)

    async def _list_sessions(self) -> list[str]:
        names: list[str] = await self._io.call(list_session_dirs, self.root)
        return sorted(names)

    # -- lifecycle of sessions and branches ----------------------------------------

    async def _close_branch(self, session_id: str, branch_id: str) -> BranchInfo:
        self._check_writable()
        async with self._locked(session_id) as session:
            branch = self._implicit_main(session, branch_id)
            await self._load_branch(session, branch)
            # Appends wait for the lock now; those already handed over finish first.
            await self._drain(branch)
            if branch.closed:
                return branch.info(session_id)
            added = branch_id not in session.branches
            logged = not added and self._logs(session)
            session.branches[branch_id] = branch
            branch.meta.closed_at = utc_now()
            if logged:
                branch.meta.known_head = branch.head
            try:
                if logged:
                    await self._log_branch(session, branch, fresh=False)
                else:
                    await self._write_manifest(session, [branch] if added else [])
            except BaseException:
                branch.meta.closed_at = None
                if added:
                    del session.branches[branch_id]
                raise
            return branch.info(session_id)

    async def _delete_branch(self, session_id: str, branch_id: str) -> None:
        self._check_writable()
        async with self._locked(session_id) as session:
            branch = session.branches.get(branch_id)
            if branch is None:
                raise BranchNotFound(session_id, branch_id)
            forks = sorted(n for n, b in session.branches.items() if b.parent_branch == branch_id)
            if forks:
                raise InvalidBranchOperation(
                    session_id, branch_id, f"branches {forks} fork from it; delete them first"
                )
            await self._drain(branch)
            now = utc_now()
            # Sources merged into it stay closed, merged into a branch that is no more.
            sources = [b for b in session.branches.values() if b.meta.merged_into == branch_id]
            before = [(b.meta.merged_into, b.meta.closed_at) for b in sources]
            for source in sources:
                source.meta.merged_into = None
                source.meta.closed_at = source.meta.closed_at or now
            del session.branches[branch_id]
            session.deleted.append(branch_id)
            try:
                await self._write_manifest(session)
            except BaseException:
                session.deleted.remove(branch_id)
                session.branches[branch_id] = branch
                for source, (merged_into, closed_at) in zip(sources, before, strict=True):
                    source.meta.merged_into, source.meta.closed_at = merged_into, closed_at
                raise
            await self._remove_deleted(session)

    async def _remove_deleted(self, session: Session) -> None:
        """Unlink the files of branches the manifest no longer names, then say so in it."""
        streams = []
        if self._feed is not None:
            for name in session.deleted:
                streams += self._feed.streams.drop(session.session_id, name)
        await self._io.call(
            self._unlink_branches, session.directory, list(session.deleted), streams
        )
        session.deleted = []
        # Should this fail, the next load unlinks again (absent files are fine).
        with contextlib.suppress(StorageError):
            await self._write_manifest(session)

    def _unlink_branches(self, directory: str, names: list[str], streams: list[int]) -> None:
        for name in names:
            self._io.forget(directory, f"{name}.jsonl")
        remove_branch_files(self._ops, directory, names, sync=self._sync)
        if self._feed is not None:
            self._feed.blank(streams)

    async def _delete_session(self, session_id: str) -> bool:
        self._check_writable()
        # Not loaded: a damaged session can be erased too. The lock waits for a merge.
        async with self._locked(session_id, load=False) as session:
            for branch in list(session.branches.values()):
                await self._drain(branch)
            try:
                # Its records leave the feed: their entries now name no stream.
                streams = [] if self._feed is None else self._feed.streams.drop(session_id)
                found: bool = await self._io.call(
                    self._bury, session.directory, session_id, streams
                )
            finally:
                # Whatever happened on disk, the next use reads it afresh.
                session.forget()
            return found

    def _bury(self, directory: str, session_id: str, streams: list[int]) -> bool:
        assert self._root_fd is not None and self._feed is not None
        found = manifest_stamp(directory) is not None
        self._io.forget(directory)
        buried = bury(self._ops, self._root_fd, session_id, sync=self._sync)
        # After the rename (the commit point): a crash before this is finished on open.
        self._feed.blank(streams)
        return buried and found

    async def _sessions(self, query: SessionQuery) -> list[SessionInfo]:
        prefix, _, _, limit, after = query
        names = sorted(await self._io.call(list_session_dirs, self.root))
        names = [
            name
            for name in names
            if (after is None or name > after) and (prefix is None or name.startswith(prefix))
        ]
        out: list[SessionInfo] = []
        for start in range(0, len(names), 64):
            # A page per I/O step, so appends to other sessions are not held up long.
            for info in await self._io.call(self._session_infos, names[start : start + 64]):
                if query.active(info.last_activity):
                    out.append(info)
                    if len(out) == limit:
                        return out
        return out

    def _session_infos(self, names: list[str]) -> list[SessionInfo]:
        write = not self.read_only
        found = [session_info(self._ops, self.root, name, write=write) for name in names]
        return [info for info in found if info is not None]

    # -- the global feed -------------------------------------------------------

    async def _read_feed(
        self,
        after: int,
        limit: int | None,
        kinds: frozenset[str] | None,
        session_ids: frozenset[str] | None,
    ) -> list[EventRecord]:
        # In steps of _FEED_STEP entries, so appends get the I/O thread in between.
        out: list[EventRecord] = []
        cursor = after
        while True:
            want = None if limit is None else limit - len(out)
            scan = await self._io.call(self._scan_feed, cursor, want, kinds, session_ids)
            out.extend(scan.records)
            if (limit is not None and len(out) >= limit) or scan.stalled:
                break
            if not scan.more or scan.covered <= cursor:
                break
            cursor = scan.covered
        if self.read_only and out:
            self._seen = max(self._seen or 0, out[-1].position)
        return out

    def _scan_feed(
        self,
        after: int,
        limit: int | None,
        kinds: frozenset[str] | None,
        session_ids: frozenset[str] | None,
    ) -> Scan:
        """One step of :meth:`_read_feed`, on the I/O thread."""
        feed = self._feed
        assert feed is not None
        if not feed.open():
            return Scan([], after, False, False)
        count = feed.count()
        first = feed.find(after, count)
        return feed.scan(self._io, after, first, count, limit, kinds, session_ids, cap=_FEED_STEP)

    async def _feed_head(self) -> int:
        if not self.read_only:
            feed = self._feed
            if feed is None or not feed.streams.blank:
                return self._visible
            # Deleted sessions left entries that name no stream: the head is the last live one.
            live: int = await self._io.call(self._live_head)
            return live
        head: int = await self._io.call(self._reader_head)
        self._seen = max(self._seen or 0, head)
        return head

    def _live_head(self) -> int:
        feed = self._feed
        assert feed is not None
        if not feed.open():
            return 0
        return feed.last_live(feed.count())

    def _reader_head(self) -> int:
        feed = self._feed
        assert feed is not None
        if not feed.open():
            return 0
        return feed.last_visible(self._io)

    def _listening(self, on: bool) -> None:
        """A read-only store follows the writer's feed while anyone listens."""
        if not self.read_only:
            return
        self._follow_wanted = on
        if not on:
            self._stop_following()
        elif self._opened and not self._closed:
            self._start_following()

    def _start_following(self) -> None:
        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(self._follow_feed(self._seen))

    def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None

    async def _follow_feed(self, cursor: int | None) -> None:
        """Tell the listeners what the writer process commits, in position order.

        Starts after ``cursor`` (the feed head this store last reported, else
        the head now). Woken by :class:`~._follow.Watcher`; when the index is
        ahead of the logs (the writer is between the two in a round) it looks
        again after a millisecond or a few.
        """
        if cursor is None:
            cursor = await self._feed_head()
        watcher = Watcher(f"{self.root}/{INDEX_FILE}", use_inotify=self._inotify)
        delay = 0.0
        try:
            while True:
                scan = await self._io.call(self._scan_feed, cursor, None, None, None)
                progressed = scan.covered > cursor
                cursor = max(cursor, scan.covered)
                self._seen = max(self._seen or 0, cursor)
                if scan.records:
                    try:
                        self._committed(scan.records)
                    except Exception as exc:
                        asyncio.get_running_loop().call_exception_handler(
                            {"message": "a store listener failed", "exception": exc}
                        )
                if scan.more and progressed:
                    continue
                if scan.stalled:
                    delay = 0.001 if progressed else min(0.02, max(0.001, delay * 2))
                    await watcher.wait(delay)
                else:
                    delay = 0.0
                    await watcher.wait(None)
        except StoreClosed:
            return
        finally:
            watcher.close()

    async def follow(
        self,
        session_id: str,
        branch_id: str = MAIN,
        after_sequence: int = 0,
        *,
        poll_interval: float = 0.05,
    ) -> AsyncIterator[EventRecord]:
        """Yield the branch's events after ``after_sequence``, then wait for more, forever.

        Meant for a ``read_only=True`` store following a log another process
        writes (``tail -f``): it re-reads the branch's head from its file every
        ``poll_interval`` seconds once caught up. Events come in order, each
        once. Stop by breaking out of the loop or closing the store.

        :raises InvalidIdentifier: for a bad id.
        :raises ValueError: for a negative ``after_sequence`` or ``poll_interval``.
        :raises StoreClosed: once the store is closed.
        :raises CorruptLog: if the log is damaged.
        """
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        if type(after_sequence) is not int or after_sequence < 0:
            raise ValueError(f"after_sequence must be an int >= 0, got {after_sequence!r}")
        if poll_interval < 0:
            raise ValueError(f"poll_interval must be >= 0, got {poll_interval!r}")
        position = after_sequence
        while True:
            batch = await self.read(session_id, branch_id, position + 1, 1000)
            for record in batch:
                yield record
            if batch:
                position = batch[-1].sequence
            if len(batch) < 1000:
                await asyncio.sleep(poll_interval)
