"""``PostgresEventStore``: many writer processes on many machines share one database.

Needs the ``postgres`` extra (asyncpg)::

    from eventstore.postgres import PostgresEventStore

    async with PostgresEventStore("postgresql://app@db/app", schema="eventjournal") as store:
        await store.append(EventRecord.new("s1", "main", 1, "message", {"text": "hi"}))

Opening creates the schema if it is missing, or upgrades an older layout in
place (under an advisory lock, so many processes may open at once), and
records its layout in ``schema_version``.

Layout. ``branches(session_id, branch_id, parent_branch, fork_sequence, head,
created_at, updated_at, merged_into, closed, closed_at)`` with primary key
``(session_id, branch_id)``; ``events(session_id, branch_id, sequence,
event_id, kind, data, metadata, recorded_at, position)`` with primary key
``(session_id, branch_id, sequence)`` and ``UNIQUE (session_id, event_id)``;
``sessions(session_id, created_at, last_activity)``, one row per session,
upserted by every write in the same transaction and indexed on
``last_activity``, so :meth:`~PostgresEventStore.sessions` reads one page of
the primary key (or of that index) whatever the number of sessions. ``data`` and
``metadata`` are ``json``, which keeps the text exactly as written (``jsonb``
would reject ``"\\u0000"`` and turn ``1e20`` into an integer); cast them to
``jsonb`` to query or index them. A branch stores only its own events; forks
copy nothing and a lineage read is one query walking up the ancestors
(copy-on-write, like every backend).

Sequence checks are atomic, never read-then-write: one statement advances the
branch row's ``head`` only where it equals ``sequence - 1`` and the branch is
open (or creates the row, for sequence 1 of ``main``), inserts the events from
that same row and upserts the session's row, so a stale or gapped append
changes nothing; the primary key backs it up. A single append or a batch is
one round trip. A lost connection mid-append raises
:class:`~eventstore.StorageError`; whether the commit landed is then unknown,
and re-appending the same records is safe: the ``UNIQUE (session_id,
event_id)`` key recognises every id the session holds, so a retry returns the
stored records (looked up only once an insert was refused).

Consumers (schema version 4): ``consumers`` and ``dead_letters`` hold the
journal's durable consumers' checkpoints, leases and dead letters
(:mod:`eventstore.postgres._consumers`).

Lookups (schema version 5): :meth:`~eventstore.EventStore.get_event` uses the
``UNIQUE (session_id, event_id)`` index; :meth:`~eventstore.EventStore.get_by_key`
the partial index ``events_key`` on ``(session_id, md5(metadata->>'key'),
position)`` over the rows whose ``key`` is a JSON string (md5: a key of any
length fits a btree entry). Upgrading a version-4 schema builds it, reading
every row once while holding off writes. ``read_last`` and ``read_at`` are one
lineage query each. :meth:`~eventstore.EventStore.copy_session` is one
transaction of ``INSERT ... SELECT`` statements, at most ``2**20 - 1`` records
(:class:`~eventstore.InvalidBranchOperation` beyond), notifying listeners of
other instances once per run of consecutive positions on one branch.

Record size: no limit of the store's own; each of ``data`` and ``metadata`` is
bounded by PostgreSQL's 1 GB per value (``json``), and in practice by memory
and the connection's bandwidth: keep records small and store large blobs
elsewhere, recording a reference.

Lifecycle. Only ``main`` comes into being by an append (an unknown branch is
:class:`~eventstore.BranchNotFound`); a closed branch refuses appends in the
same atomic statement. Forks, merges, closes and deletes of one session take a
transaction-scoped advisory lock on it; appends and merges then take their
target branch's advisory lock (see the feed, below); then every write takes
branch rows (in id order), then the session's row, in this order only. So
:meth:`~PostgresEventStore.delete_session`, one transaction deleting the
session's rows from every table, waits for the writes in progress (a pending
merge included) and never deadlocks with them; a write that comes after finds
the session gone, and sequence 1 of ``main`` starts it afresh. The rows are
gone at commit; their bytes stay in the table files as dead tuples until
``VACUUM`` reclaims the space (``VACUUM FULL`` rewrites the files), and in the
WAL and any backup until those rotate.

The global feed: each row's ``position`` is its transaction's id
(``pg_current_xact_id()``) times 2**20 plus its ordinal in the transaction,
known inside the insert, so an append returns it; one insert per transaction,
at most 2**20 rows. :meth:`~PostgresEventStore.read_feed` returns only rows
below the horizon, ``pg_snapshot_xmin(pg_current_snapshot())`` scaled alike:
every transaction below it has ended and every later one gets a larger id, so
no row ever appears below a position already returned (the no-skip
guarantee), while writers stay concurrent. Appends to one branch take a
transaction-scoped advisory lock before their first write, so a branch's
later sequences always get larger positions. A deleted session's records
leave the feed with it. Positions follow transaction start, not commit: a
reader sees a record once every older transaction has ended. The caveat: one
long transaction anywhere on the server (any database: xids are
cluster-wide), holding an xid, holds the feed back until it ends;
``idle_in_transaction_session_timeout`` bounds the damage. A feed read (and
``feed_head``) waits, up to :data:`CATCH_UP_SECONDS`, for the transactions open
when it was called to end, so it returns every record committed before the
call: a process reads its own writes, and a reader woken by a listener finds
the records it was told about. The feed's positions are one server's xids: on
Citus every node has its own, so the feed needs a single server.

Live events cross processes with ``LISTEN/NOTIFY``: each commit notifies
``<schema>.events`` with its committed range (session, branch, first..last
sequence, first position; never the payload), delivered on commit; a store
with listeners (:meth:`~eventstore.EventStore.add_listener`) reads each other
instance's range with one query and passes the records on; its own commits
it passes on directly, before the writing call returns.

Scaling out with Citus: every table's key starts with ``session_id`` and every
query filters on it (only :meth:`~PostgresEventStore.list_sessions`,
:meth:`~PostgresEventStore.sessions`, the feed and the listener's re-reads span
sessions), so the tables distribute by session and stay co-located, making
each write a single-shard transaction::

    SELECT create_distributed_table('eventjournal.events', 'session_id');
    SELECT create_distributed_table('eventjournal.branches', 'session_id',
                                    colocate_with => 'eventjournal.events');
    SELECT create_distributed_table('eventjournal.sessions', 'session_id',
                                    colocate_with => 'eventjournal.events');
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from operator import attrgetter
from typing import Any, ParamSpec, TypeVar

import asyncpg
import msgspec

from .._base import EventStore, replay, resolve_retry
from .._consumers import ConsumerInfo, ConsumerState
from .._errors import (
    BranchClosed,
    BranchExists,
    BranchNotFound,
    EventStoreError,
    InvalidBranchOperation,
    StorageError,
    StoreClosed,
)
from .._ids import MAIN
from .._json import encode
from .._lineage import check_merge, merged_records
from .._records import BranchInfo, EventRecord, MergeResult, SessionInfo, utc_now
from .._ulid import new_ulid
from .._validate import MAX_SEQUENCE, SessionQuery
from ._consumers import ConsumerStatements, PostgresConsumerState, info_of
from ._listen import Listener, notice_prefix
from ._pool import ConnectionPool
from ._rows import info, record, records, session_info
from ._schema import MAX_PER_TRANSACTION, Statements, check_schema_name, migrate

__all__ = ("CATCH_UP_SECONDS", "PostgresEventStore")

logger = logging.getLogger("eventstore.postgres")

_replace = msgspec.structs.replace
#: Stands in for "no upper bound" in range queries.
_NO_END = MAX_SEQUENCE
#: Attempts before an append that keeps losing races to branch creation gives up.
_APPEND_ATTEMPTS = 8
#: What a prefix of some session id can look like (see ``_ids``).
_ID_PREFIX = re.compile(r"[A-Za-z0-9._-]*")
#: Longest wait of a feed read for the horizon to pass what this store delivered.
CATCH_UP_SECONDS = 2.0

_by_sequence = attrgetter("sequence")


#: Attempts of a write PostgreSQL aborted to break a deadlock (it rolled back whole).
_DEADLOCK_ATTEMPTS = 5

_W = TypeVar("_W")
_P = ParamSpec("_P")


def _deadlock_retried(
    write: Callable[_P, Coroutine[Any, Any, _W]],
) -> Callable[_P, Coroutine[Any, Any, _W]]:
    """Run a write again when PostgreSQL chose it as a deadlock's victim.

    The victim's transaction rolled back whole, so running it again is the same
    as the first call. Lifecycle and append transactions take their locks in one
    documented order, but a statement's CTEs may lock rows in any order, so the
    server's detector stays the last word; this keeps its verdict from reaching
    the caller as a :class:`StorageError`.
    """

    @functools.wraps(write)
    async def retried(*args: _P.args, **kwargs: _P.kwargs) -> _W:
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                return await write(*args, **kwargs)
            except StorageError as exc:
                if attempt == _DEADLOCK_ATTEMPTS or not isinstance(
                    exc.__cause__, asyncpg.exceptions.DeadlockDetectedError
                ):
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))
        raise AssertionError("unreachable")

    return retried


class PostgresEventStore(EventStore):
    """An :class:`~eventstore.EventStore` in PostgreSQL, shared by many writer processes.

    :param dsn: a libpq connection string or URL.
    :param schema: the schema holding the tables; created if missing.
    :param min_size: connections the pool keeps open.
    :param max_size: most connections the pool opens.
    :param acquire_timeout: seconds an operation waits for a free pooled
        connection before raising :class:`~eventstore.StorageError`; ``None``
        waits for ever.
    :param connect_kwargs: passed on to :func:`asyncpg.connect` (``ssl``, ``timeout``...).
    :raises ValueError: for a schema name that is not a plain lower-case identifier,
        pool sizes outside ``0 <= min_size <= max_size``, ``max_size >= 1``, or an
        ``acquire_timeout`` that is not positive.
    """

    #: Other processes write to the same tables (their commits reach listeners).
    shared_writers = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "eventjournal",
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float | None = 30.0,
        **connect_kwargs: Any,
    ) -> None:
        self._dsn = dsn
        self._schema = check_schema_name(schema)
        self._connect_kwargs = connect_kwargs
        self._instance_id = new_ulid()
        channel = f"{schema}.events"
        self._sql = Statements(schema, channel)
        self._consumer_sql = ConsumerStatements(schema)
        self._pool = ConnectionPool(
            self._connect, min_size=min_size, max_size=max_size, acquire_timeout=acquire_timeout
        )
        self._listener = Listener(
            self._connect, self._ready, self._deliver, self._sql, channel, self._instance_id
        )
        self._want_listen = False
        #: The xid of a transaction found holding the feed back for too long.
        self._stuck_at = -1

    @property
    def schema(self) -> str:
        """The schema holding this store's tables."""
        return self._schema

    def __repr__(self) -> str:
        return f"<PostgresEventStore schema={self._schema!r} {super().__repr__()[1:-1]}>"

    async def listening(self) -> None:
        """Return once other processes' commits reach this store's listeners.

        Listening starts with the first :meth:`~eventstore.EventStore.add_listener`
        (once the store is open) and stops when the last is removed; commits
        before it began are not delivered (read them with :meth:`read` or
        :meth:`read_feed`). With no listener this returns at once. A lost
        connection is re-made (and what was missed re-read) in the background.

        :raises StorageError: if listening ended before it began.
        :raises StoreClosed: after :meth:`close`.
        """
        await self._ready()
        if self._want_listen:
            await self._listener.listening()

    # -- plumbing ----------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate asyncpg's errors into the store's, once, at the boundary."""
        try:
            yield
        except EventStoreError:
            raise
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # a connection killed while idle, seen late
            OSError,
        ) as exc:
            if self._closed:
                raise StoreClosed() from exc
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    def _connect(self) -> Any:
        # JIT compiling the lineage query costs more than running it.
        settings = {"application_name": "eventjournal", "jit": "off"}
        kwargs = dict(self._connect_kwargs)
        settings.update(kwargs.pop("server_settings", None) or {})
        return asyncpg.connect(self._dsn, server_settings=settings, **kwargs)

    async def _open(self) -> None:
        with self._errors():
            await self._pool.open()
            try:
                async with self._pool.acquire() as conn:
                    await migrate(conn, self._schema)
            except BaseException:
                await self._pool.close()
                raise
        if self._want_listen:
            self._listener.start()

    async def _consumer_state(self, name: str) -> ConsumerState:
        return PostgresConsumerState(name, self._consumer_sql, self._pool, self._errors)

    async def _consumers(self) -> list[ConsumerInfo]:
        with self._errors():
            rows = await self._pool.fetch(self._consumer_sql.infos)
        return [info_of(row) for row in rows]

    async def _close(self) -> None:
        await self._listener.stop()
        await self._pool.close()

    def _listening(self, on: bool) -> None:
        # Listening starts only once open (and so on a running loop): a
        # listener added to an unopened store must not open it behind its back.
        self._want_listen = on
        if not on:
            self._listener.halt()
        elif self._opened and not self._closed:
            self._listener.start()

    def _deliver(self, stored: Sequence[EventRecord]) -> None:
        if stored:
            self._committed(stored)

    # -- writes ----------------------------------------------------------------

    @_deadlock_retried
    async def _append_batch(self, events: list[EventRecord]) -> list[EventRecord]:
        with self._errors():
            async with self._pool.acquire() as conn:
                for _ in range(_APPEND_ATTEMPTS):
                    written = await self._insert(conn, events)
                    if written is not None:
                        self._deliver(written)
                        return written
                    stored = await self._settle(conn, events)
                    if stored is not None:
                        return stored
        first = events[0]
        raise StorageError(f"append to {first.session_id}/{first.branch_id} kept losing races")

    async def _insert(
        self, conn: Any, events: Sequence[EventRecord], at_head: bool = False
    ) -> list[EventRecord] | None:
        """Run the atomic head-check-and-insert: the written records, or None if refused.

        Refused: the head was not ``first - 1``, the branch is closed or (but for
        ``main``) missing, or an event id is already stored in the session;
        :meth:`_settle` tells which. ``at_head``: number them from the head
        instead (refused only for an event id, or a closed or missing branch).
        The caller delivers them once their transaction committed.
        """
        first = events[0]
        if len(events) > MAX_PER_TRANSACTION:
            raise InvalidBranchOperation(
                first.session_id,
                first.branch_id,
                f"{len(events)} records in one transaction; PostgreSQL takes at most "
                f"{MAX_PER_TRANSACTION}",
            )
        sql = self._sql
        single = len(events) == 1
        # Only main comes into being by an append (its sequence 1, or append_next).
        if first.branch_id == MAIN:
            if at_head:
                statement = sql.append_new_at_head_one if single else sql.append_new_at_head
            elif first.sequence == 1:
                statement = sql.append_new_one if single else sql.append_new
            else:
                statement = sql.append_next_one if single else sql.append_next
        elif at_head:
            statement = sql.append_at_head_one if single else sql.append_at_head
        else:
            statement = sql.append_next_one if single else sql.append_next
        notice = notice_prefix(self._instance_id, first.session_id, first.branch_id)
        try:
            if single:
                # One value per column: the statement needs no arrays to unnest.
                row = await conn.fetchrow(
                    statement,
                    first.session_id,
                    first.branch_id,
                    first.sequence,
                    first.event_id,
                    first.kind,
                    encode(first.data).decode(),
                    encode(first.metadata).decode(),
                    first.recorded_at,
                    notice,
                )
            else:
                row = await conn.fetchrow(
                    statement,
                    first.session_id,
                    first.branch_id,
                    first.sequence,
                    [e.event_id for e in events],
                    [e.kind for e in events],
                    [encode(e.data).decode() for e in events],
                    [encode(e.metadata).decode() for e in events],
                    [e.recorded_at for e in events],
                    notice,
                )
        except asyncpg.UniqueViolationError:
            # The primary key caught what the head check should have, or the
            # (session_id, event_id) key a stored id: _settle sorts them out.
            return None
        if row is None:
            return None
        base, start = row["base"], row["first"]
        return [_replace(e, sequence=start + i, position=base + i) for i, e in enumerate(events)]

    @_deadlock_retried
    async def _append_next(self, events: list[EventRecord]) -> list[EventRecord]:
        first = events[0]
        with self._errors():
            async with self._pool.acquire() as conn:
                for _ in range(_APPEND_ATTEMPTS):
                    written = await self._insert(conn, events, True)
                    if written is not None:
                        self._deliver(written)
                        return written
                    stored = await self._replayed(conn, events)
                    if stored is not None:
                        return stored
                    row = await self._branch_row(conn, first)
                    if row is not None and row["closed"]:
                        raise BranchClosed(first.session_id, first.branch_id, row["merged_into"])
        raise StorageError(f"append to {first.session_id}/{first.branch_id} kept losing races")

    async def _replayed(self, conn: Any, events: list[EventRecord]) -> list[EventRecord] | None:
        """The stored records if the batch was written before (see :func:`replay`)."""
        first = events[0]
        rows = await conn.fetch(
            self._sql.by_event_ids, first.session_id, [e.event_id for e in events]
        )
        if not rows:
            return None
        by_id = {row["event_id"]: record(first.session_id, row) for row in rows}
        return replay(events, [by_id.get(e.event_id) for e in events])

    async def _branch_row(self, conn: Any, first: EventRecord) -> Any:
        """The row of the branch ``first`` goes to; None for a ``main`` not made yet.

        :raises BranchNotFound: for an unknown branch other than ``main``.
        """
        row = await conn.fetchrow(self._sql.branch, first.session_id, first.branch_id)
        if row is None and first.branch_id != MAIN:
            raise BranchNotFound(first.session_id, first.branch_id)
        return row

    async def _settle(self, conn: Any, events: list[EventRecord]) -> list[EventRecord] | None:
        """After a refused insert: the stored records of a retry, or the typed error.

        Returns None when the branch moved to exactly ``first - 1`` meanwhile
        (a concurrent creation), so the insert is worth another try.
        """
        first = events[0]
        stored = await self._replayed(conn, events)
        if stored is not None:
            return stored
        row = await self._branch_row(conn, first)
        head = 0 if row is None else row["head"]
        if first.sequence != head + 1:
            stored = await self._read_on(
                conn, first.session_id, first.branch_id, first.sequence, events[-1].sequence, None
            )
            return resolve_retry(stored, events, head)
        if row is not None and row["closed"]:
            raise BranchClosed(first.session_id, first.branch_id, row["merged_into"])
        return None

    @_deadlock_retried
    async def _create_branch(
        self, session_id: str, branch_id: str, from_branch: str, fork_sequence: int | None
    ) -> BranchInfo:
        if branch_id == MAIN:
            # ``main`` exists implicitly in every session, so it is never a fork.
            raise BranchExists(session_id, branch_id)
        sql = self._sql
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.lock_session_graph, session_id)
                if await conn.fetchrow(sql.branch, session_id, branch_id) is not None:
                    raise BranchExists(session_id, branch_id)
                if from_branch == MAIN:
                    await conn.execute(sql.ensure_main, session_id)
                # FOR SHARE holds off merges and appends on the parent until we commit,
                # so the fork point checked here stays valid.
                parent = await conn.fetchrow(sql.branch_for_share, session_id, from_branch)
                if parent is None:
                    raise BranchNotFound(session_id, from_branch)
                if parent["closed"]:
                    raise BranchClosed(session_id, from_branch, parent["merged_into"])
                head = parent["head"]
                at = head if fork_sequence is None else fork_sequence
                if at > head:
                    raise InvalidBranchOperation(
                        session_id,
                        branch_id,
                        f"fork_sequence {at} is beyond the head {head} of {from_branch!r}",
                    )
                row = await conn.fetchrow(sql.create_branch, session_id, branch_id, from_branch, at)
                if row is None:
                    raise BranchExists(session_id, branch_id)
                await conn.execute(sql.touch_session, session_id)
                return info(session_id, row)

    @_deadlock_retried
    async def _merge_branch(
        self, session_id: str, source_branch: str, target_branch: str
    ) -> MergeResult:
        sql = self._sql
        written: list[EventRecord] | None = []
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                # The session's graph lock, then the target's branch lock, first of
                # all, before anything gives this transaction its xid: see lock_branch.
                await conn.execute(sql.lock_session_graph, session_id)
                await conn.execute(sql.lock_branch, session_id, target_branch)
                if MAIN in (source_branch, target_branch):
                    await conn.execute(sql.ensure_main, session_id)
                names = sorted({source_branch, target_branch})
                locked = {
                    row["branch_id"]: info(session_id, row)
                    for row in await conn.fetch(sql.branches_for_update, session_id, names)
                }
                for name in (source_branch, target_branch):
                    if name not in locked:
                        raise BranchNotFound(session_id, name)
                everything = {
                    row["branch_id"]: info(session_id, row)
                    for row in await conn.fetch(sql.branches, session_id)
                }
                check_merge(everything, session_id, source_branch, target_branch)
                for name in (source_branch, target_branch):
                    if locked[name].closed:
                        raise BranchClosed(session_id, name, locked[name].merged_into)
                source_rows = await conn.fetch(sql.own_events, session_id, source_branch)
                target = locked[target_branch]
                merged = merged_records(
                    (record(session_id, r) for r in source_rows), target_branch, target.head
                )
                if merged:
                    # Both rows are locked, so this insert cannot lose a race.
                    written = await self._insert(conn, merged)
                    if written is None:
                        raise StorageError(f"merge into {session_id}/{target_branch} lost its lock")
                await conn.execute(sql.mark_merged, session_id, source_branch, target_branch)
                await conn.execute(sql.touch_session, session_id)
        if written:
            self._deliver(written)
        count = len(merged)
        return MergeResult(source_branch, target_branch, count, target.head + count)

    # -- lifecycle -----------------------------------------------------------------

    @_deadlock_retried
    async def _close_branch(self, session_id: str, branch_id: str) -> BranchInfo:
        sql = self._sql
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.lock_session_graph, session_id)
                if branch_id == MAIN:
                    await conn.execute(sql.ensure_main, session_id)
                row = await conn.fetchrow(sql.close_branch, session_id, branch_id)
                if row is None:  # closed already, or missing
                    row = await conn.fetchrow(sql.branch, session_id, branch_id)
        if row is None:
            raise BranchNotFound(session_id, branch_id)
        return info(session_id, row)

    @_deadlock_retried
    async def _delete_session(self, session_id: str) -> bool:
        sql = self._sql
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                # The session's graph lock, its branch rows, then its row: the order
                # every write takes them in, so pending appends, forks and merges
                # are waited for, and none of them can deadlock with the delete.
                await conn.execute(sql.lock_session_graph, session_id)
                await conn.fetch(sql.lock_session_branches, session_id)
                await conn.fetch(sql.lock_session, session_id)
                deleted = await conn.fetchval(sql.delete_session, session_id)
        return bool(deleted)

    @_deadlock_retried
    async def _delete_branch(self, session_id: str, branch_id: str) -> None:
        sql = self._sql
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                # Waits for a fork in progress, so the check below sees every child;
                # FOR UPDATE waits for an append in progress.
                await conn.execute(sql.lock_session_graph, session_id)
                if await conn.fetchrow(sql.branch_for_update, session_id, branch_id) is None:
                    raise BranchNotFound(session_id, branch_id)
                forks = [
                    row["branch_id"]
                    for row in await conn.fetch(sql.forks_of, session_id, branch_id)
                ]
                if forks:
                    raise InvalidBranchOperation(
                        session_id, branch_id, f"branches {forks} fork from it; delete them first"
                    )
                await conn.execute(sql.delete_branch, session_id, branch_id)

    # -- reads -------------------------------------------------------------------

    async def _read(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> list[EventRecord]:
        with self._errors():
            async with self._pool.acquire() as conn:
                return await self._read_on(conn, session_id, branch_id, start, end, limit)

    async def _read_on(
        self,
        conn: Any,
        session_id: str,
        branch_id: str,
        start: int,
        end: int | None,
        limit: int | None,
    ) -> list[EventRecord]:
        rows = await conn.fetch(
            self._sql.read, session_id, branch_id, start, _NO_END if end is None else end, limit
        )
        found = [record(session_id, row) for row in rows]
        found.sort(key=_by_sequence)
        if limit is not None:
            del found[limit:]
        return found

    async def _head(self, session_id: str, branch_id: str) -> int:
        with self._errors():
            row = await self._pool.fetchrow(self._sql.head, session_id, branch_id)
        return 0 if row is None else int(row["head"])

    async def _list_branches(self, session_id: str) -> list[BranchInfo]:
        with self._errors():
            rows = await self._pool.fetch(self._sql.branches, session_id)
        return [info(session_id, row) for row in rows]

    async def _branch_info(self, session_id: str, branch_id: str) -> BranchInfo:
        with self._errors():
            row = await self._pool.fetchrow(self._sql.branch, session_id, branch_id)
        if row is not None:
            return info(session_id, row)
        if branch_id != MAIN:
            raise BranchNotFound(session_id, branch_id)
        return BranchInfo(session_id, MAIN, None, 0, 0, utc_now())

    async def _list_sessions(self) -> list[str]:
        with self._errors():
            rows = await self._pool.fetch(self._sql.session_ids)
        return [row["session_id"] for row in rows]

    async def _sessions(self, query: SessionQuery) -> list[SessionInfo]:
        prefix, active_after, active_before, limit, after = query
        prefix = prefix or ""
        if _ID_PREFIX.fullmatch(prefix) is None:
            return []  # no id starts with it
        # Ids are ASCII below DEL, so [prefix, prefix + DEL) holds exactly the
        # ids that start with the prefix: a range the primary key serves.
        args = (after or "", prefix, prefix + "\x7f", active_after, active_before, limit)
        with self._errors():
            if active_after is None and active_before is None:
                rows = await self._pool.fetch(self._sql.sessions, *args)
            else:
                async with self._pool.acquire() as conn, conn.transaction():
                    await conn.execute(self._sql.custom_plans)
                    rows = await conn.fetch(self._sql.sessions, *args)
        return [session_info(row) for row in rows]

    # -- lookups -------------------------------------------------------------------

    async def _get_event(self, session_id: str, event_id: str) -> EventRecord | None:
        with self._errors():
            row = await self._pool.fetchrow(self._sql.by_event_id, session_id, event_id)
        return None if row is None else record(session_id, row)

    async def _get_by_key(self, session_id: str, key: str) -> EventRecord | None:
        with self._errors():
            row = await self._pool.fetchrow(self._sql.by_key, session_id, key)
        return None if row is None else record(session_id, row)

    async def _read_last(
        self,
        session_id: str,
        branch_id: str,
        kinds: frozenset[str] | None,
        limit: int,
        end: int | None,
    ) -> list[EventRecord]:
        args = (
            session_id,
            branch_id,
            _NO_END if end is None else end,
            None if kinds is None else sorted(kinds),
            limit,
        )
        with self._errors():
            rows = await self._pool.fetch(self._sql.read_last, *args)
        found = [record(session_id, row) for row in rows]
        found.sort(key=_by_sequence, reverse=True)
        return found[:limit]

    async def _read_at(
        self, session_id: str, branch_id: str, sequences: list[int]
    ) -> dict[int, EventRecord]:
        args = (session_id, branch_id, sequences[0], sequences[-1], sequences)
        with self._errors():
            rows = await self._pool.fetch(self._sql.read_at, *args)
        return {row["sequence"]: record(session_id, row) for row in rows}

    @_deadlock_retried
    async def _copy_session(
        self, source: str, target: str, branch_id: str | None, to_sequence: int | None
    ) -> list[BranchInfo]:
        sql = self._sql
        prefix = encode((self._instance_id, target)).decode()[:-1]
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                # Lock order: both sessions' graph locks (in id order: two copies
                # never deadlock), the target's branch locks (before the first
                # write: positions), the source's branch rows, the target's row.
                for session_id in sorted({source, target}):
                    await conn.execute(sql.lock_session_graph, session_id)
                names = (
                    [MAIN]
                    if branch_id is not None
                    else [r["branch_id"] for r in await conn.fetch(sql.branches, source)]
                )
                for name in sorted(names):
                    await conn.execute(sql.lock_branch, target, name)
                if await conn.fetch(sql.branches, target):
                    raise BranchExists(target, MAIN)
                # FOR SHARE: appends to the source wait until the copy commits.
                rows = await conn.fetch(sql.lock_session_branches_share, source)
                known = {row["branch_id"]: row for row in rows}
                if not known or (branch_id is not None and branch_id not in known):
                    raise BranchNotFound(source, MAIN if branch_id is None else branch_id)
                if branch_id is None:
                    count = int(await conn.fetchval(sql.copy_count, source))
                    self._check_copy_size(source, MAIN, count)
                    infos = [
                        info(target, r) for r in await conn.fetch(sql.copy_branches, source, target)
                    ]
                    copied = await conn.fetch(sql.copy_events, source, target, prefix)
                else:
                    head = known[branch_id]["head"]
                    end = head if to_sequence is None else to_sequence
                    if end > head:
                        raise InvalidBranchOperation(
                            source,
                            branch_id,
                            f"to_sequence {end} is beyond the head {head} of {branch_id!r}",
                        )
                    self._check_copy_size(source, branch_id, end)
                    infos = [info(target, await conn.fetchrow(sql.copy_main, target, end))]
                    copied = await conn.fetch(
                        sql.copy_history, source, target, prefix, branch_id, end
                    )
                await conn.execute(sql.touch_session, target)
        self._deliver([record(target, row) for row in copied])
        infos.sort(key=attrgetter("branch_id"))
        return infos

    @staticmethod
    def _check_copy_size(source: str, branch_id: str, count: int) -> None:
        """:raises InvalidBranchOperation: for more records than one transaction takes."""
        if count >= MAX_PER_TRANSACTION:
            raise InvalidBranchOperation(
                source,
                branch_id,
                f"a copy of {count} records; PostgreSQL copies at most "
                f"{MAX_PER_TRANSACTION - 1} in its one transaction",
            )

    # -- the feed ----------------------------------------------------------------

    async def _read_feed(
        self,
        after: int,
        limit: int | None,
        kinds: frozenset[str] | None,
        session_ids: frozenset[str] | None,
    ) -> list[EventRecord]:
        args = (
            min(after, _NO_END),
            limit,
            None if kinds is None else list(kinds),
            None if session_ids is None else list(session_ids),
        )
        with self._errors():
            async with self._pool.acquire() as conn:
                rows = await self._settled(conn, self._sql.feed, args)
        return [] if rows[0]["position"] is None else records(rows)

    async def _feed_head(self) -> int:
        with self._errors():
            async with self._pool.acquire() as conn:
                rows = await self._settled(conn, self._sql.feed_head, ())
        return int(rows[0]["head"])

    async def _settled(self, conn: Any, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """Run a feed query so it sees every transaction that began before the call.

        Rows become visible below the horizon only, so if transactions were
        open when the query ran, wait for the horizon to pass them all and run
        it again. A transaction still open after :data:`CATCH_UP_SECONDS` is
        not waited for again while it holds the horizon (its feed records,
        and every later one, follow once it ends).
        """
        rows: list[Any] = await conn.fetch(sql, *args)
        xmin, xmax = rows[0]["xmin"], rows[0]["xmax"]
        if xmin >= xmax or xmin == self._stuck_at:
            return rows
        deadline = time.monotonic() + CATCH_UP_SECONDS
        delay = 0.0005
        while xmin < xmax:
            if time.monotonic() >= deadline:
                logger.warning(
                    "the feed is held back by transaction %d, open for over %.1fs",
                    xmin,
                    CATCH_UP_SECONDS,
                )
                self._stuck_at = xmin
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            xmin = await conn.fetchval(self._sql.xmin)
        rows = await conn.fetch(sql, *args)
        return rows
