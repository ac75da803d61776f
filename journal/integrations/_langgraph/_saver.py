"""``JournalCheckpointSaver``: LangGraph checkpoints kept in an :class:`~journal.EventJournal`."""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from eventstore import MAIN, BranchInfo, BranchNotFound, EventRecord, new_ulid
from journal._journal import EventJournal
from journal._typed import JournalError

from ._records import (
    CHECKPOINT,
    DELETED,
    WRITES,
    Codec,
    checkpoint_key,
    writes_key,
)
from ._threads import session_for, thread_for

__all__ = ("JournalCheckpointSaver", "SyncCallError")

T = TypeVar("T")

_BRANCH_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,121}")
_HEAD_KINDS = (CHECKPOINT, DELETED)
_MAX_HEADS = 4096
_MAX_MARKS = 4096  # checkpoints remembered per session
_MAX_VIEWS = 256  # sessions remembered
_MAX_GAPS = 16  # appends of ours a view waits for before it starts over


class _Mark:
    """Where one checkpoint this saver knows is, with its latest pending-writes record."""

    __slots__ = ("branch", "event_id", "known", "sequence", "writes_id", "writes_sequence")

    def __init__(self, record: EventRecord, writes: EventRecord | None, known: bool) -> None:
        self.branch, self.sequence, self.event_id = (
            record.branch_id,
            record.sequence,
            record.event_id,
        )
        # ``known``: ``writes`` is the checkpoint's latest writes record (None: it has none).
        self.known = known
        self.writes_sequence, self.writes_id = 0, ""
        if writes is not None:
            self.wrote(writes)

    def wrote(self, writes: EventRecord) -> None:
        """``writes`` is now the checkpoint's latest writes record."""
        self.writes_sequence, self.writes_id = writes.sequence, writes.event_id


class _View:
    """What this saver knows of one session, exact while its branches' heads are ``heads``.

    ``heads[b]`` is the head of branch ``b`` up to which every record is
    accounted for: the marks of checkpoints on ``b`` name their latest writes
    record as of that head. Only this saver's appends advance it (see
    :meth:`JournalCheckpointSaver._note`), contiguously: once another saver or
    process writes the branch, its head never again equals ``heads[b]``, so
    :meth:`JournalCheckpointSaver._unmoved` fails and the slow reads run (until
    the view is rebuilt). A mark is ``known`` (names the latest writes) once a
    lookup of the whole session found them, or, in a ``fresh`` view, from its
    put on; a fresh view is checked against every branch's head. ``latest[ns]``
    (the key of the newest live checkpoint of ``ns``) needs every branch in
    ``heads`` (``complete``).
    """

    __slots__ = ("complete", "fresh", "heads", "latest", "marks", "orphans", "pending")

    def __init__(self, heads: dict[str, int] | None = None) -> None:
        self.heads: dict[str, int] = heads or {}
        self.complete = heads is not None
        self.pending: set[tuple[str, int]] = set()
        self.marks: dict[str, _Mark] = {}
        self.latest: dict[str, tuple[str, str]] = {}  # ns -> (checkpoint id, key)
        # Fresh: this saver appended every record of the session, so a checkpoint
        # it puts has no writes unless it wrote them (``orphans``) or put it before.
        self.fresh = False
        self.orphans: set[str] = set()

    def add(self, key: str, mark: _Mark) -> None:
        """Remember ``mark``, forgetting the older half of the marks if there are too many.

        A fresh view forgets them all and is fresh no more (a forgotten mark
        could not tell a later put of the same checkpoint that it had writes).
        """
        if len(self.marks) >= _MAX_MARKS or len(self.orphans) >= _MAX_MARKS:
            if self.fresh:
                self.marks.clear()
                self.latest.clear()
                self.orphans.clear()
                self.fresh = False
                mark.known = False
            else:
                for old in list(self.marks)[: _MAX_MARKS // 2]:
                    del self.marks[old]
        self.marks[key] = mark


class SyncCallError(JournalError, RuntimeError):
    """A synchronous saver method was called where it cannot wait for the journal.

    The sync methods run the async ones on the journal's event loop and wait
    for the result, so they must be called from another thread.
    """

    def __init__(self, method: str, reason: str) -> None:
        self.method = method
        self.reason = reason
        super().__init__(f"JournalCheckpointSaver.{method}() {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.method, self.reason)


class JournalCheckpointSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer whose threads are sessions of an :class:`~journal.EventJournal`.

    Each LangGraph thread is one session: a thread id that is an identifier
    (``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``) is the session id; any other is
    encoded one to one as ``lg--`` plus its base32 (up to 77 UTF-8 bytes;
    longer ones raise :class:`InvalidThreadId`). Checkpoints and
    pending writes are records of that session (layout: :mod:`._records`), so
    they are published live like any commit and readable with the journal's
    tools. A fork (time travel: a checkpoint whose parent is no longer the
    latest of its branch) becomes a branch ``fork-<checkpoint id>`` created at
    the parent's sequence; the thread's latest checkpoint is the newest one
    on any branch, as with LangGraph's own savers.

    ``delete_for_runs`` and ``prune(strategy="keep_latest")`` hide checkpoints
    behind ``langgraph.deleted`` records: the log is append-only, so they free
    no space (``delete_thread``, ``prune(strategy="delete")`` and
    :meth:`~journal.EventJournal.expire` do). ``delete_for_runs`` reads every
    session of the journal.

    The async methods are the real ones. The sync ones run them on the loop
    the journal runs on (the one the saver was made on, the ``loop`` given, or
    the one its first async call ran on) and wait, so they work from any other
    thread, e.g. ``graph.invoke`` in a worker thread or a sync web handler.

    One process writes a thread at a time (as LangGraph runs it). Within this
    saver, checkpoint puts to one thread are serialized, and so are the pending
    writes of one checkpoint (each ``put_writes`` stores the merged set); a put
    and another checkpoint's writes may share one durable write (the file
    store's group commit).

    The saver remembers where the checkpoints it put or read last are (a few
    integers each, up to 4096 per thread); before using that memory it checks
    the store's branch heads, so a thread written by another saver or process
    is read from the store. Reading one's own checkpoint by id or the latest
    then costs one positional read, and ``put_writes`` reads no record first.

    :param journal: an open journal; the saver does not close it.
    :param serde: the serializer of checkpoints and writes (default:
        LangGraph's ``JsonPlusSerializer``).
    :param loop: the journal's event loop, for the sync methods.
    """

    def __init__(
        self,
        journal: EventJournal,
        *,
        serde: SerializerProtocol | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.journal = journal
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self._loop = loop
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # (session, ns) -> (branch, checkpoint id) of the last checkpoint this saver put
        # there: a put whose parent it is needs no read (see ``_branch_for``).
        self._heads: dict[tuple[str, str], tuple[str, str]] = {}
        # session -> what this saver knows of it, checked against the store's heads
        # before each use (see ``_View``).
        self._views: dict[str, _View] = {}
        self._inflight: dict[str, int] = {}  # session -> appends not yet accounted for

    @property
    def _codec(self) -> Codec:
        # Not cached: ``with_allowlist`` swaps ``serde`` on a shallow copy.
        return Codec(self.serde)

    # -- async API ---------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or its namespace's latest; ``None`` if none.

        :raises InvalidThreadId: for a thread id that cannot name a session.
        :raises StorageError, StoreClosed: as the journal's reads.
        """
        self._bind()
        conf = config["configurable"]
        thread_id, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        session = session_for(thread_id)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            key = checkpoint_key(ns, checkpoint_id)
            found = await self._known(session, key)
            if found is not None and found[1] is not None:
                return self._tuple(str(thread_id), found[1], found[2])
            # Both lookups at once: PostgreSQL runs them on two connections.
            record, writes = await asyncio.gather(
                self.journal.get_by_key(session, key),
                self.journal.get_by_key(session, writes_key(ns, checkpoint_id)),
            )
            if record is None or record.kind != CHECKPOINT:
                return None
        else:
            found = await self._known_latest(session, ns)
            if found is not None and found[1] is not None:
                return self._tuple(str(thread_id), found[1], found[2])
            infos = await self.journal.list_branches(session)
            record = await self._latest(session, ns, infos)
            if record is None:
                return None
            writes = await self.journal.get_by_key(session, writes_key(ns, record.data["id"]))
            await self._learn(session, ns, infos, record, writes)
        return self._tuple(str(thread_id), record, writes)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """The thread's checkpoints (every thread's with ``config=None``), newest first.

        Filtered as LangGraph's savers filter: by ``checkpoint_ns`` and
        ``checkpoint_id`` if ``config`` has them, by metadata items equal to
        ``filter``'s, to ids below ``before``'s; at most ``limit``. Reads the
        whole thread (every session with ``config=None``).

        :raises InvalidThreadId: for a thread id that cannot name a session.
        :raises StorageError, StoreClosed: as the journal's reads.
        """
        self._bind()
        if config is None:
            threads = _threads(await self.journal.list_sessions())
            ns_wanted, id_wanted = None, None
        else:
            conf = config["configurable"]
            threads = [str(conf["thread_id"])]
            ns_wanted, id_wanted = conf.get("checkpoint_ns"), get_checkpoint_id(config)
        before_id = get_checkpoint_id(before) if before else None
        codec = self._codec
        for thread_id in threads:
            checkpoints, writes = await self._scan(session_for(thread_id))
            rows = sorted(checkpoints.values(), key=lambda r: r.data["id"], reverse=True)
            for record in rows:
                data = record.data
                if (
                    (ns_wanted is not None and data["ns"] != ns_wanted)
                    or (id_wanted and data["id"] != id_wanted)
                    or (before_id and data["id"] >= before_id)
                ):
                    continue
                if filter:
                    metadata = codec.metadata(data)
                    if any(metadata.get(k) != v for k, v in filter.items()):
                        continue
                if limit is not None:
                    if limit <= 0:
                        return
                    limit -= 1
                wkey = writes_key(data["ns"], data["id"])
                yield self._tuple(thread_id, record, writes.get(wkey))

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store ``checkpoint`` as the child of ``config``'s checkpoint (if it names one).

        On the parent's branch if the parent is still the latest checkpoint of
        its namespace there; else on a new branch forked at the parent.

        :returns: the config naming the stored checkpoint.
        :raises InvalidThreadId: for a thread id that cannot name a session.
        :raises InvalidEvent: if a record would be over the store's size limit.
        :raises StorageError, StoreClosed: as the journal's writes.
        """
        self._bind()
        conf = config["configurable"]
        thread_id, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        parent = conf.get("checkpoint_id") or None
        session = session_for(thread_id)
        data = self._codec.checkpoint_data(
            ns, checkpoint, dict(get_checkpoint_metadata(config, metadata)), parent
        )
        key, wkey = checkpoint_key(ns, checkpoint["id"]), writes_key(ns, checkpoint["id"])
        async with self._lock(session):
            for attempt in (1, 2):
                branch = await self._branch_for(session, ns, parent, checkpoint["id"])
                # A new session: this saver will have seen every record of it.
                new = session not in self._views and not await self.journal.list_branches(session)
                try:
                    record, view = await self._append(session, CHECKPOINT, data, branch, key, new)
                    break
                except BranchNotFound:
                    # The remembered branch went with its session (deleted elsewhere).
                    self._forget(session)
                    if attempt == 2:
                        raise
            if len(self._heads) >= _MAX_HEADS:
                self._heads.clear()
            self._heads[(session, ns)] = (branch, checkpoint["id"])
            # It has no writes yet, unless some were written for its id before (a re-put).
            known = view.fresh and key not in view.marks and wkey not in view.orphans
            view.add(key, _Mark(record, None, known=known))
            newest = view.latest.get(ns)
            if newest is not None and checkpoint["id"] > newest[0]:
                view.latest[ns] = (checkpoint["id"], key)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Add a task's pending writes to ``config``'s checkpoint.

        A write already stored under the same ``(task_id, index)`` is kept
        (so a retried call adds nothing); the special channels (errors,
        interrupts, resumes) replace theirs.

        :raises InvalidThreadId, InvalidEvent, StorageError, StoreClosed: as :meth:`aput`.
        """
        self._bind()
        conf = config["configurable"]
        ns, checkpoint_id = conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
        session = session_for(conf["thread_id"])
        wkey = writes_key(ns, checkpoint_id)
        key = checkpoint_key(ns, checkpoint_id)
        codec = self._codec
        async with self._lock(f"{session}\n{wkey}"):
            found = await self._known(session, key, checkpoint=False)
            if found is not None:
                branch, _, previous = found
            else:
                previous, owner = await asyncio.gather(
                    self.journal.get_by_key(session, wkey),
                    self.journal.get_by_key(session, key),
                )
                if owner is not None:
                    branch = owner.branch_id
                elif previous is not None:
                    branch = previous.branch_id
                else:
                    branch = await self._current_branch(session)
            entries = {(e[0], e[1]): e for e in previous.data["writes"]} if previous else {}
            changed = False
            for index, (channel, value) in enumerate(writes):
                idx = WRITES_IDX_MAP.get(channel, index)
                if idx >= 0 and (task_id, idx) in entries:
                    continue
                entries[(task_id, idx)] = codec.write_entry(task_id, idx, channel, value, task_path)
                changed = True
            if not changed:
                return
            ordered = sorted(entries.values(), key=lambda e: writes_sort_key(e[5], e[0], e[1]))
            data = {"ns": ns, "checkpoint_id": checkpoint_id, "writes": ordered}
            record, view = await self._append(session, WRITES, data, branch, wkey)
            mark = view.marks.get(key)
            if mark is None:
                view.orphans.add(wkey)
            elif mark.branch == branch:
                # Now the checkpoint's latest writes record (the others were merged in).
                mark.known = True
                mark.wrote(record)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete the thread's session: every checkpoint, write and fork of it.

        :raises InvalidThreadId, StorageError, StoreClosed: as :meth:`aput`.
        """
        self._bind()
        session = session_for(thread_id)
        self._forget(session)
        await self.journal.delete_session(session)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy the whole thread, forks included, into a new thread (a no-op if it is empty).

        The records are copied (:meth:`~journal.EventJournal.copy_session`), so
        deleting either thread later leaves the other whole.

        :raises BranchExists: if the target thread already has checkpoints.
        :raises InvalidThreadId, StorageError, StoreClosed: as :meth:`aput`.
        """
        self._bind()
        source, target = session_for(source_thread_id), session_for(target_thread_id)
        self._forget(target)
        try:
            await self.journal.copy_session(source, target)
        except BranchNotFound:
            return

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Hide every checkpoint whose metadata ``run_id`` is one of ``run_ids``, with its writes.

        Reads every session of the journal; frees no space (see the class docs).

        :raises StorageError, StoreClosed: as the journal's reads and writes.
        """
        self._bind()
        wanted = set(run_ids)
        if not wanted:
            return
        codec = self._codec
        for session in await self.journal.list_sessions():
            async with self._lock(session):
                checkpoints, _ = await self._scan(session)
                doomed = [
                    r
                    for r in checkpoints.values()
                    if codec.metadata(r.data).get("run_id") in wanted
                ]
                await self._hide(session, doomed)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only each namespace's latest checkpoint (``"keep_latest"``), or nothing.

        ``"delete"`` deletes the threads' sessions; ``"keep_latest"`` hides the
        other checkpoints and frees no space. The kept checkpoint holds its
        whole state (this saver stores full checkpoints, never deltas).

        :raises ValueError: for another strategy.
        :raises InvalidThreadId, StorageError, StoreClosed: as :meth:`aput`.
        """
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        self._bind()
        for thread_id in thread_ids:
            session = session_for(thread_id)
            self._forget(session)
            if strategy == "delete":
                await self.journal.delete_session(session)
                continue
            async with self._lock(session):
                checkpoints, _ = await self._scan(session)
                latest: dict[str, EventRecord] = {}
                for r in checkpoints.values():
                    ns = r.data["ns"]
                    if ns not in latest or r.data["id"] > latest[ns].data["id"]:
                        latest[ns] = r
                kept = {id(r) for r in latest.values()}
                await self._hide(session, [r for r in checkpoints.values() if id(r) not in kept])

    # -- sync API: the async one, run on the journal's loop ------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """:meth:`aget_tuple`, from a thread other than the journal's loop.

        :raises SyncCallError: on the journal's loop, or if no loop is known yet.
        """
        return self._sync("get_tuple", self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """:meth:`alist`, from a thread other than the journal's loop.

        :raises SyncCallError: as :meth:`get_tuple`.
        """
        loop = self._sync_loop("list")
        return _iterate(loop, self.alist(config, filter=filter, before=before, limit=limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """:meth:`aput`, from a thread other than the journal's loop.

        :raises SyncCallError: as :meth:`get_tuple`.
        """
        return self._sync("put", self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """:meth:`aput_writes`, from a thread other than the journal's loop.

        :raises SyncCallError: as :meth:`get_tuple`.
        """
        self._sync("put_writes", self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """:meth:`adelete_thread`, from a thread other than the journal's loop.

        :raises SyncCallError: as :meth:`get_tuple`.
        """
        self._sync("delete_thread", self.adelete_thread(thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """:meth:`acopy_thread`, from a thread other than the journal's loop.

        :raises SyncCallError: as :meth:`get_tuple`.
        """
        self._sync("copy_thread", self.acopy_thread(source_thread_id, target_thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """:meth:`adelete_for_runs`, from a thread other than the journal's loop.

        :raises SyncCallError: as :meth:`get_tuple`.
        """
        self._sync("delete_for_runs", self.adelete_for_runs(run_ids))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """:meth:`aprune`, from a thread other than the journal's loop.

        :raises SyncCallError: as :meth:`get_tuple`.
        """
        self._sync("prune", self.aprune(thread_ids, strategy=strategy))

    # -- internals -----------------------------------------------------------------

    def _bind(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    def _sync_loop(self, method: str) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            raise SyncCallError(
                method,
                "does not know the journal's event loop yet: make the saver inside "
                "it, pass loop=, or call an async method first",
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise SyncCallError(
                method,
                "was called on the journal's own event loop, where waiting would "
                f"deadlock: use 'await saver.a{method}(...)' (or graph.ainvoke) there, "
                "or call it from another thread",
            )
        return loop

    def _sync(self, method: str, coro: Coroutine[Any, Any, T]) -> T:
        try:
            loop = self._sync_loop(method)
        except SyncCallError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _forget(self, session: str) -> None:
        """Drop what this saver remembers of a session's heads."""
        self._views.pop(session, None)
        for key in [k for k in self._heads if k[0] == session]:
            del self._heads[key]

    async def _append(
        self, session: str, kind: str, data: Any, branch: str, key: str, new: bool = False
    ) -> tuple[EventRecord, _View]:
        """Record an event keyed ``key`` and account for it (:meth:`_note`)."""
        self._inflight[session] = self._inflight.get(session, 0) + 1
        try:
            record = await self.journal.record(
                session, kind, data, branch_id=branch, metadata={"key": key}
            )
            return record, self._note(session, record, new)
        finally:
            self._inflight[session] -= 1
            if not self._inflight[session]:
                del self._inflight[session]

    def _note(self, session: str, record: EventRecord, new: bool = False) -> _View:
        """Account for a record this saver appended; the session's view (a new one if none).

        ``new``: the session had no branch before ``record`` was appended.
        """
        view = self._views.get(session)
        branch, sequence = record.branch_id, record.sequence
        if view is None:
            if len(self._views) >= _MAX_VIEWS:
                del self._views[next(iter(self._views))]
            view = self._views[session] = _View()
            view.fresh = new and branch == MAIN and sequence == 1
        head = view.heads.get(branch)
        if head is None and view.fresh and view.heads:
            # Another writer's branch: what the fresh view proved is void.
            del self._views[session]
            return self._note(session, record)
        if head is None:
            # A branch this view did not know: what came before concerns none of its marks.
            view.heads[branch] = sequence
            view.complete = False
            view.latest.clear()
        elif sequence == head + 1:
            while (branch, sequence + 1) in view.pending:
                sequence += 1
                view.pending.discard((branch, sequence))
            view.heads[branch] = sequence
        elif sequence > head and len(view.pending) < _MAX_GAPS:
            # Another append of ours not accounted yet, or another writer's: the head
            # stays until the gap is filled, so no check passes meanwhile.
            view.pending.add((branch, sequence))
        else:
            # Accounted already (the session was rewritten), or too many gaps: start over.
            del self._views[session]
            return self._note(session, record)
        return view

    async def _unmoved(self, session: str, view: _View, branch: str) -> bool:
        """Whether no one else wrote what ``view`` relies on for ``branch``'s marks.

        A fresh view relies on every branch (its marks assume no writes came
        before their checkpoints), others on ``branch`` alone. A fresh view
        found moved while no append of ours is under way is dropped.
        """
        if not view.fresh:
            expected = view.heads.get(branch)
            return expected is not None and await self.journal.head(session, branch) == expected
        infos = await self.journal.list_branches(session)
        if {i.branch_id: i.head for i in infos} == view.heads:
            return True
        if not self._inflight.get(session) and self._views.get(session) is view:
            del self._views[session]
        return False

    async def _known(
        self, session: str, key: str, *, checkpoint: bool = True
    ) -> tuple[str, EventRecord | None, EventRecord | None] | None:
        """A checkpoint this saver knows, with its writes, in one read; ``None`` if not sure.

        Sure means the branch's head is still the one its view accounts for (no
        one else appended since) and the records at the remembered sequences
        are the remembered ones. Gives ``(branch, checkpoint, writes)``; with
        ``checkpoint=False`` the checkpoint record is not read (``None``).
        """
        view = self._views.get(session)
        mark = None if view is None else view.marks.get(key)
        if view is None or mark is None or not mark.known:
            return None
        branch, writes_id = mark.branch, mark.writes_id
        sequences = [mark.sequence] if checkpoint else []
        if writes_id:
            sequences.append(mark.writes_sequence)
        if sequences:
            unmoved, found = await asyncio.gather(
                self._unmoved(session, view, branch),
                self.journal.read_at(session, branch, sequences),
            )
        else:
            unmoved, found = await self._unmoved(session, view, branch), []
        record = found[0] if checkpoint else None
        writes = found[-1] if writes_id else None
        if (
            not unmoved
            or (checkpoint and (record is None or record.event_id != mark.event_id))
            or (writes_id and (writes is None or writes.event_id != writes_id))
        ):
            return None
        return branch, record, writes

    async def _known_latest(
        self, session: str, ns: str
    ) -> tuple[str, EventRecord | None, EventRecord | None] | None:
        """The newest checkpoint of ``ns`` if this saver knows it (see :meth:`_known`)."""
        view = self._views.get(session)
        newest = None if view is None or not view.complete else view.latest.get(ns)
        if view is None or newest is None:
            return None
        infos = await self.journal.list_branches(session)
        if {i.branch_id: i.head for i in infos} != view.heads:
            return None
        return await self._known(session, newest[1])

    async def _learn(
        self,
        session: str,
        ns: str,
        infos: Sequence[BranchInfo],
        record: EventRecord,
        writes: EventRecord | None,
    ) -> None:
        """Remember ``record`` as the newest of ``ns`` if no branch moved while it was read."""
        heads = {i.branch_id: i.head for i in infos}
        after = await self.journal.list_branches(session)
        if {i.branch_id: i.head for i in after} != heads or (
            writes is not None and writes.branch_id != record.branch_id
        ):
            return
        view = self._views.get(session)
        if view is None or view.heads != heads or view.pending:
            if view is None and len(self._views) >= _MAX_VIEWS:
                del self._views[next(iter(self._views))]
            view = self._views[session] = _View(heads)
        view.complete = True
        key = record.metadata["key"]
        mark = view.marks.get(key)
        if mark is None or mark.event_id != record.event_id or not mark.known:
            view.add(key, _Mark(record, writes, known=True))
        view.latest[ns] = (record.data["id"], key)

    def _lock(self, name: str) -> asyncio.Lock:
        """The lock of a thread's puts (``name``: its session) or of one checkpoint's writes."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _tuple(
        self, thread_id: str, record: EventRecord, writes: EventRecord | None
    ) -> CheckpointTuple:
        codec, data = self._codec, record.data
        ns, parent = data["ns"], data["parent"]
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": data["id"],
                }
            },
            checkpoint=codec.checkpoint(data),
            metadata=codec.metadata(data),
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent,
                    }
                }
                if parent
                else None
            ),
            pending_writes=codec.pending_writes(None if writes is None else writes.data),
        )

    async def _scan(self, session: str) -> tuple[dict[str, EventRecord], dict[str, EventRecord]]:
        """The session's live checkpoints and latest writes records, by key."""
        last: dict[str, EventRecord] = {}
        for info in await self.journal.list_branches(session):
            async for record in self.journal.iter_events(
                session, info.branch_id, info.fork_sequence + 1
            ):
                if record.kind in _HEAD_KINDS or record.kind == WRITES:
                    key = str(record.metadata["key"])
                    seen = last.get(key)
                    if seen is None or record.position > seen.position:
                        last[key] = record
        checkpoints = {k: r for k, r in last.items() if r.kind == CHECKPOINT}
        writes = {k: r for k, r in last.items() if r.kind == WRITES}
        return checkpoints, writes

    async def _latest(
        self, session: str, ns: str, infos: Sequence[BranchInfo]
    ) -> EventRecord | None:
        """The newest live checkpoint of ``ns`` on any of the branches ``infos``."""
        best: EventRecord | None = None
        for info in infos:
            record = await self._head(session, info.branch_id, ns)
            if record is not None and (best is None or record.data["id"] > best.data["id"]):
                best = record
        return best

    async def _head(self, session: str, branch: str, ns: str) -> EventRecord | None:
        """The last live checkpoint of ``ns`` in the branch's history, read backwards."""
        hidden: set[str] = set()
        end: int | None = None
        page = 4
        while True:
            records = await self.journal.read_last(
                session, branch, kinds=_HEAD_KINDS, limit=page, to_sequence=end
            )
            for record in records:
                if record.data["ns"] != ns:
                    continue
                key = record.metadata["key"]
                if record.kind == DELETED:
                    hidden.add(key)
                elif key not in hidden and (
                    record.branch_id == branch or await self._alive(session, record)
                ):
                    return record
            if len(records) < page or records[-1].sequence <= 1:
                return None
            end = records[-1].sequence - 1
            page = min(page * 4, 256)

    async def _alive(self, session: str, record: EventRecord) -> bool:
        # An inherited checkpoint's deletion went to the branch that wrote it,
        # which may be past the fork point: ask the key.
        current = await self.journal.get_by_key(session, record.metadata["key"])
        return current is not None and current.kind == CHECKPOINT

    async def _current_branch(self, session: str) -> str:
        """The branch written last (``main`` for a new or unforked thread)."""
        branches = await self.journal.list_branches(session)
        if len(branches) <= 1:
            return MAIN
        best, best_position = MAIN, -1
        for info in branches:
            last = await self.journal.read_last(session, info.branch_id)
            if last and last[0].branch_id == info.branch_id and last[0].position > best_position:
                best, best_position = info.branch_id, last[0].position
        return best

    async def _branch_for(self, session: str, ns: str, parent: str | None, child: str) -> str:
        """Where a new checkpoint goes: its parent's branch, or a fork at the parent."""
        if parent is None:
            return await self._current_branch(session)
        # A run's next step: the parent is the checkpoint this saver put last, so
        # it is its branch's head. Only another writer of the same thread (which
        # LangGraph does not support) could have moved the head since; its cost
        # would be a child filed after a sibling instead of on a fork, with every
        # parent link and read still right.
        branch, last = self._heads.get((session, ns), (MAIN, None))
        if last == parent:
            return branch
        guess = branch
        owner, head = await asyncio.gather(
            self.journal.get_by_key(session, checkpoint_key(ns, parent)),
            self._head(session, guess, ns),
        )
        if owner is None or owner.kind != CHECKPOINT:
            return await self._current_branch(session)
        if owner.branch_id != guess:
            head = await self._head(session, owner.branch_id, ns)
        if head is None or head.event_id == owner.event_id:
            return owner.branch_id
        fork = f"fork-{child}" if _BRANCH_SAFE.fullmatch(child) else f"fork-{new_ulid()}"
        info = await self.journal.create_branch(
            session, fork, from_branch=owner.branch_id, fork_sequence=owner.sequence
        )
        view = self._views.get(session)
        if view is not None:
            view.heads.setdefault(fork, info.head)
        return fork

    async def _hide(self, session: str, records: Sequence[EventRecord]) -> None:
        """Append a deletion for each checkpoint, on the branch that wrote it."""
        self._forget(session)
        by_branch: dict[str, list[EventRecord]] = {}
        for r in records:
            draft = EventRecord.new(
                session,
                r.branch_id,
                1,
                DELETED,
                {"ns": r.data["ns"], "id": r.data["id"]},
                metadata={"key": r.metadata["key"]},
            )
            by_branch.setdefault(r.branch_id, []).append(draft)
        for drafts in by_branch.values():
            await self.journal.store.append_next(drafts)


def _threads(sessions: list[str]) -> list[str]:
    """The thread ids of ``sessions``, leaving out those no thread maps to."""
    out = []
    for session in sessions:
        try:
            out.append(thread_for(session))
        except ValueError:
            continue
    return out


def _iterate(loop: asyncio.AbstractEventLoop, agen: AsyncIterator[T]) -> Iterator[T]:
    """Pull an async iterator living on ``loop`` from another thread."""
    try:
        while True:
            item = asyncio.run_coroutine_threadsafe(_next(agen), loop).result()
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(agen, "aclose", None)
        if close is not None:
            asyncio.run_coroutine_threadsafe(close(), loop).result()


_DONE = object()


async def _next(agen: AsyncIterator[T]) -> T | object:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return _DONE
