"""PostgreSQL session lifecycle beyond the contract suite: upgrade, erasure, locks, races.

The contract suite checks close/delete/sessions on every backend; these tests
look at the tables themselves, at the upgrade of a version-1 schema, and at two
store instances (two pools, as two processes would have) racing on one schema.
Like tests/eventstore/test_postgres.py they fail instead of skipping under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from eventstore import (
    BranchClosed,
    BranchExists,
    BranchNotFound,
    EventRecord,
    EventStore,
    InvalidBranchOperation,
    SequenceConflict,
    SessionInfo,
    StorageError,
)
from tests.conftest import PG_DSN, _postgres_factory

if os.environ.get("CI", "").lower() in ("true", "1"):
    import asyncpg  # under CI a missing driver fails loudly, never skips
else:
    asyncpg = pytest.importorskip("asyncpg")

from eventstore.postgres import PostgresEventStore, _schema
from eventstore.testing import LifecycleContract

StoreFactory = Callable[[], EventStore]

#: Upper bound for anything that waits on another connection.
DEADLINE = 60


def make_store(schema: str, app: str = "eventjournal") -> PostgresEventStore:
    return PostgresEventStore(
        PG_DSN, schema=schema, max_size=4, server_settings={"application_name": app}
    )


def ev(session: str, seq: int, data: Any = None, branch: str = "main") -> EventRecord:
    return EventRecord.new(session, branch, seq, "message", {"n": seq} if data is None else data)


async def every_row_as_text(admin: Any, schema: str) -> dict[str, list[str]]:
    """Every row of every table of the schema, as PostgreSQL prints the row."""
    tables = await admin.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm') ORDER BY c.relname",
        schema,
    )
    return {
        t[0]: [r[0] for r in await admin.fetch(f'SELECT x::text FROM "{schema}"."{t[0]}" x')]
        for t in tables
    }


async def wait_until_blocked(admin: Any, app: str) -> None:
    """Until a backend of application ``app`` waits on a lock (asked of the server)."""
    async with asyncio.timeout(DEADLINE):
        while not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = $1 AND wait_event_type = 'Lock'",
            app,
        ):
            await asyncio.sleep(0.01)


# -- upgrade ---------------------------------------------------------------------------


async def _version_1_schema(admin: Any, schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema as eventjournal with layout 1 left it, holding two sessions."""
    with monkeypatch.context() as patch:
        patch.setattr(_schema, "SCHEMA_VERSION", 1)
        await _schema.migrate(admin, schema)
    s = f'"{schema}"'
    await admin.execute(
        f"""
        INSERT INTO {s}.branches VALUES
          ('s1', 'main', NULL, 0, 3, '2026-01-01 10:00Z', '2026-01-01 10:05Z', NULL),
          ('s1', 'side', 'main', 1, 2, '2026-01-01 10:01Z', '2026-01-01 10:04Z', 'main'),
          ('s2', 'main', NULL, 0, 1, '2026-02-01 09:00Z', '2026-02-01 09:00Z', NULL);
        INSERT INTO {s}.events (session_id, branch_id, sequence, event_id, kind, data,
                                metadata, recorded_at) VALUES
          ('s1', 'main', 1, 'e1', 'k', '1', '{{}}', '2026-01-01 10:00Z'),
          ('s1', 'side', 2, 'e2', 'k', '2', '{{}}', '2026-01-01 10:02Z'),
          ('s1', 'main', 2, 'e3', 'k', '3', '{{}}', '2026-01-01 10:03Z'),
          ('s1', 'main', 3, 'e4', 'k', '2', '{{}}', '2026-01-01 10:05Z'),
          ('s2', 'main', 1, 'e5', 'k', '5', '{{}}', '2026-02-01 09:30Z');
        """
    )


async def test_a_version_1_schema_is_upgraded_in_place(
    schema: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _version_1_schema(admin, schema, monkeypatch)
    async with make_store(schema) as store:
        version = await admin.fetchval(f'SELECT max(version) FROM "{schema}".schema_version')
        assert version == _schema.SCHEMA_VERSION == 5
        jan, feb = datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 2, 1, 9, tzinfo=UTC)
        assert await store.sessions() == [
            SessionInfo("s1", 2, 4, jan, jan + timedelta(minutes=5)),
            SessionInfo("s2", 1, 1, feb, feb + timedelta(minutes=30)),
        ]
        side = await store.branch_info("s1", "side")
        assert (side.closed, side.merged_into) == (True, "main")
        assert not (await store.branch_info("s1")).closed
        with pytest.raises(BranchClosed):
            await store.append(ev("s1", 3, branch="side"))
        before = datetime.now(UTC) - timedelta(seconds=5)
        await store.append(ev("s2", 2))
        (s2,) = await store.sessions(prefix="s2")
        assert (s2.events, s2.last_activity > before) == (2, True)
        assert [info.session_id for info in await store.sessions(active_after=before)] == ["s2"]
        assert await store.delete_session("s1")
        assert await store.list_sessions() == ["s2"]


async def test_concurrent_opens_of_a_version_1_schema_upgrade_it_once(
    schema: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _version_1_schema(admin, schema, monkeypatch)
    stores = [make_store(schema) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        versions = await admin.fetch(f'SELECT version FROM "{schema}".schema_version')
        assert sorted(row[0] for row in versions) == [1, 2, 3, 4, 5]
        assert [info.events for info in await stores[3].sessions()] == [4, 1]
    finally:
        await asyncio.gather(*(store.close() for store in stores))


# -- erasure ---------------------------------------------------------------------------


async def test_a_deleted_session_leaves_no_byte_in_any_table(schema: str, admin: Any) -> None:
    marker = f"secret-{secrets.token_hex(8)}"
    kept = f"kept-{secrets.token_hex(8)}"
    session = f"erase-{secrets.token_hex(4)}"
    async with make_store(schema) as store:
        await store.append_batch(
            [ev(session, n, {"text": marker}) for n in (1, 2)]
            + [EventRecord.new(session, "main", 3, marker, metadata={"who": marker})]
        )
        await store.create_branch(session, "side", fork_sequence=1)
        await store.append(ev(session, 2, {"text": marker}, branch="side"))
        await store.create_branch(session, "draft")
        await store.merge_branch(session, "side", "main")
        await store.close_branch(session, "draft")
        await store.append(ev("other", 1, {"text": kept}))
        assert marker in str(await every_row_as_text(admin, schema))

        assert await store.delete_session(session) is True

        rows = await every_row_as_text(admin, schema)
        assert set(rows) == {
            "branches",
            "consumers",
            "dead_letters",
            "events",
            "schema_version",
            "sessions",
        }
        assert marker not in str(rows)
        assert session not in str(rows)
        assert kept in str(rows["events"])
        assert await store.read(session) == []
        assert await store.head(session) == 0
        assert await store.list_branches(session) == []
        assert [info.session_id for info in await store.sessions()] == ["other"]
        assert await store.delete_session(session) is False


async def test_a_deleted_id_starts_again_at_sequence_1(schema: str) -> None:
    async with make_store(schema) as store:
        first = await store.append(ev("s1", 1, {"v": "old"}))
        await store.create_branch("s1", "side")
        await store.close_branch("s1")
        assert await store.delete_session("s1")
        with pytest.raises(SequenceConflict):
            await store.append(ev("s1", 2))
        with pytest.raises(BranchNotFound):
            await store.append(ev("s1", 1, branch="side"))
        # Even the old event id is free again: the session starts from nothing.
        again = EventRecord("s1", "main", 1, "message", {"v": "new"}, event_id=first.event_id)
        stored = await store.append(again)
        assert stored == msgspec.structs.replace(again, position=stored.position)
        assert await store.read("s1") == [stored]
        assert [b.branch_id for b in await store.list_branches("s1")] == ["main"]
        (info,) = await store.sessions()
        assert (info.branches, info.events) == (1, 1)


async def test_delete_waits_for_a_pending_merge_into_the_session(schema: str, admin: Any) -> None:
    merging, deleting = f"ej-merge-{schema}", f"ej-delete-{schema}"
    async with make_store(schema, merging) as merger, make_store(schema, deleting) as deleter:
        await merger.append_batch([ev("m", 1), ev("m", 2)])
        await merger.create_branch("m", "side")
        await merger.append_batch([ev("m", 3, branch="side"), ev("m", 4, branch="side")])
        # Hold the session's row: the merge then stops inside its transaction,
        # its branch rows locked and its records inserted but not committed.
        async with admin.transaction():
            await admin.execute(
                f'SELECT 1 FROM "{schema}".sessions WHERE session_id = $1 FOR UPDATE', "m"
            )
            merge = asyncio.create_task(merger.merge_branch("m", "side", "main"))
            await wait_until_blocked(admin, merging)
            delete = asyncio.create_task(deleter.delete_session("m"))
            await wait_until_blocked(admin, deleting)
            assert not merge.done() and not delete.done()
        async with asyncio.timeout(DEADLINE):
            result = await merge
            assert await delete is True
        assert result.merged_events == 2
        assert await deleter.read("m") == []
        assert await merger.list_branches("m") == []
        for name, rows in (await every_row_as_text(admin, schema)).items():
            if name != "schema_version":
                assert rows == [], name


async def test_a_delete_killed_midway_leaves_the_session_whole(schema: str, admin: Any) -> None:
    deleting = f"ej-delete-{schema}"
    async with make_store(schema) as store, make_store(schema, deleting) as deleter:
        written = await store.append_batch([ev("s1", n) for n in (1, 2, 3)])
        await store.create_branch("s1", "side", fork_sequence=1)
        before = await every_row_as_text(admin, schema)
        async with admin.transaction():
            # The delete takes its locks, then waits for the session's row: kill it there.
            await admin.execute(
                f'SELECT 1 FROM "{schema}".sessions WHERE session_id = $1 FOR UPDATE', "s1"
            )
            delete = asyncio.create_task(deleter.delete_session("s1"))
            await wait_until_blocked(admin, deleting)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1",
                deleting,
            )
            with pytest.raises(StorageError):
                await asyncio.wait_for(delete, DEADLINE)
        assert await every_row_as_text(admin, schema) == before
        assert await store.read("s1") == written
        assert await deleter.delete_session("s1") is True
        assert await store.list_sessions() == []


async def test_delete_branch_races_a_fork_of_it(schema: str) -> None:
    async with make_store(schema) as one, make_store(schema) as two:
        for round_ in range(20):
            session = f"r{round_}"
            await one.append(ev(session, 1))
            await one.create_branch(session, "parent")
            fork = one.create_branch(session, "child", from_branch="parent")
            delete = two.delete_branch(session, "parent")
            forked, deleted = await asyncio.gather(fork, delete, return_exceptions=True)
            names = [b.branch_id for b in await one.list_branches(session)]
            if isinstance(deleted, InvalidBranchOperation):
                assert names == ["child", "main", "parent"]
                assert not isinstance(forked, BaseException)
            else:
                assert deleted is None, deleted
                assert isinstance(forked, BranchNotFound), forked
                assert names == ["main"]


async def test_expire_deletes_what_the_activity_index_finds_idle(schema: str, admin: Any) -> None:
    async with make_store(schema) as store:
        for n in range(5):
            await store.append(ev(f"s{n}", 1))
        # Backdate two sessions rather than wait for them to idle.
        await admin.execute(
            f"UPDATE \"{schema}\".sessions SET last_activity = now() - interval '2 days'"
            " WHERE session_id = ANY($1)",
            ["s1", "s3"],
        )
        assert await store.expire(idle_for=timedelta(days=1)) == ["s1", "s3"]
        assert await store.list_sessions() == ["s0", "s2", "s4"]
        assert await store.read("s1") == []
        assert await store.expire(idle_for=timedelta(days=1)) == []


# -- closed and unknown branches across instances --------------------------------------------


async def test_a_close_by_one_instance_binds_the_others(schema: str, admin: Any) -> None:
    async with make_store(schema) as one, make_store(schema) as two:
        await one.append(ev("s1", 1))
        await one.create_branch("s1", "side")
        info = await one.close_branch("s1", "side")
        assert (info.closed, info.merged_into) == (True, None)
        with pytest.raises(BranchClosed) as caught:
            await two.append_batch([ev("s1", 2, branch="side"), ev("s1", 3, branch="side")])
        assert caught.value.merged_into is None
        with pytest.raises(BranchClosed):
            await two.create_branch("s1", "again", from_branch="side")
        assert await one.close_branch("s1", "side") == info  # idempotent
        with pytest.raises(BranchNotFound):
            await two.append_batch([ev("s1", 2, branch="ghost"), ev("s1", 3, branch="ghost")])
        with pytest.raises(BranchNotFound):
            await two.append(ev("s1", 1, branch="ghost"))
        ghosts = await admin.fetchval(
            f'SELECT count(*) FROM "{schema}".branches WHERE branch_id = $1', "ghost"
        )
        assert ghosts == 0
        closed_at = await admin.fetchval(
            f'SELECT closed_at FROM "{schema}".branches WHERE branch_id = $1', "side"
        )
        assert closed_at is not None


# -- sessions() is O(page) -----------------------------------------------------------------


async def test_sessions_reads_one_page_whatever_the_total(schema: str, admin: Any) -> None:
    async with make_store(schema) as store:
        await store.list_sessions()  # creates the schema
    s = f'"{schema}"'
    # 50,000 sessions of one branch each, one in 1,000 idle for a day.
    await admin.execute(
        f"""
        INSERT INTO {s}.sessions
        SELECT 's' || lpad(i::text, 6, '0'), now(),
               CASE WHEN i % 1000 = 0 THEN now() - interval '1 day' ELSE now() END
        FROM generate_series(1, 50000) i;
        INSERT INTO {s}.branches
        SELECT 's' || lpad(i::text, 6, '0'), 'main', NULL, 0, 2, now(), now(), NULL, false
        FROM generate_series(1, 50000) i;
        ANALYZE {s}.sessions; ANALYZE {s}.branches;
        """
    )
    sql = _schema.Statements(schema, f"{schema}.events").sessions
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    cases = {
        "after": ("s025000", "", "\x7f", None, None, 20),
        "prefix": ("", "s0490", "s0490\x7f", None, None, 20),
        "idle": ("", "", "\x7f", None, hour_ago, 20),
        "busy": ("s010000", "", "\x7f", hour_ago, None, 20),
    }
    for name, args in cases.items():
        plan = await admin.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        top = json.loads(plan)[0]["Plan"]
        blocks = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
        # A page of 20 costs ~4 blocks per row (its branches) plus a few index pages;
        # a scan of every session would touch thousands.
        assert blocks < 250, (name, blocks)
    async with make_store(schema) as store:
        page = await store.sessions(after="s025000", limit=3)
        assert [info.session_id for info in page] == ["s025001", "s025002", "s025003"]
        assert [info.events for info in page] == [2, 2, 2]
        idle = await store.sessions(active_before=hour_ago, after="s047000")
        assert [info.session_id for info in idle] == ["s048000", "s049000", "s050000"]
        assert await store.sessions(prefix="s0499", active_before=hour_ago) == []
        assert await store.sessions(prefix="no/such", limit=5) == []


# -- two instances racing ------------------------------------------------------------------

#: What a writer racing a deleter may legitimately be told.
_LOSSES = (SequenceConflict, BranchNotFound, BranchExists, BranchClosed, InvalidBranchOperation)


async def _write(store: EventStore, rng: random.Random, session: str) -> None:
    branch = rng.choice(["main", "main", "x", "y"])
    roll = rng.random()
    if roll < 0.6:
        head = await store.head(session, branch)
        await store.append_batch([ev(session, head + k, branch=branch) for k in (1, 2)])
    elif roll < 0.75:
        await store.create_branch(session, branch)
    elif roll < 0.9:
        await store.merge_branch(session, branch, "main")
    else:  # closing main, now and then, ends the session's appends until its delete
        await store.close_branch(session, rng.choice([branch, "x", "y"]))


async def _writer(store: EventStore, rng: random.Random, sessions: list[str], ops: int) -> int:
    """Random appends, forks, merges and closes; returns how many succeeded."""
    done = 0
    for _ in range(ops):
        try:
            await _write(store, rng, rng.choice(sessions))
            done += 1
        except _LOSSES:
            pass
    return done


async def _deleter(store: EventStore, rng: random.Random, sessions: list[str], ops: int) -> int:
    """Random session and branch deletes; returns how many erased something."""
    done = 0
    for _ in range(ops):
        session = rng.choice(sessions)
        try:
            if rng.random() < 0.7:
                done += await store.delete_session(session)
            else:
                await store.delete_branch(session, rng.choice(["x", "y"]))
                done += 1
        except (BranchNotFound, InvalidBranchOperation):
            pass
    return done


async def test_two_stores_appending_and_deleting_at_once_keep_the_tables_whole(
    schema: str, admin: Any
) -> None:
    sessions = [f"race{i}" for i in range(4)]
    async with make_store(schema) as one, make_store(schema) as two:
        *written, deleted_a, deleted_b = await asyncio.gather(
            *(_writer(one, random.Random(seed), sessions, 120) for seed in range(3)),
            _writer(two, random.Random(7), sessions, 120),
            *(_deleter(two, random.Random(10 + seed), sessions, 60) for seed in range(2)),
        )
        assert min(written) >= 10 and deleted_a + deleted_b >= 10, (written, deleted_a, deleted_b)
        s = f'"{schema}"'
        checks = {
            "events without their branch": f"""SELECT count(*) FROM {s}.events e
                WHERE NOT EXISTS (SELECT 1 FROM {s}.branches b
                    WHERE b.session_id = e.session_id AND b.branch_id = e.branch_id)""",
            "branches without their session": f"""SELECT count(*) FROM {s}.branches b
                WHERE NOT EXISTS (SELECT 1 FROM {s}.sessions x
                    WHERE x.session_id = b.session_id)""",
            "sessions without main": f"""SELECT count(*) FROM {s}.sessions x
                WHERE NOT EXISTS (SELECT 1 FROM {s}.branches b
                    WHERE b.session_id = x.session_id AND b.branch_id = 'main')""",
            "branches whose rows are not fork+1..head": f"""SELECT count(*) FROM {s}.branches b
                WHERE (SELECT count(*) FROM {s}.events e WHERE e.session_id = b.session_id
                       AND e.branch_id = b.branch_id) <> b.head - b.fork_sequence
                   OR EXISTS (SELECT 1 FROM {s}.events e WHERE e.session_id = b.session_id
                       AND e.branch_id = b.branch_id
                       AND (e.sequence <= b.fork_sequence OR e.sequence > b.head))""",
            "merged into a missing branch": f"""SELECT count(*) FROM {s}.branches b
                WHERE b.merged_into IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {s}.branches t
                    WHERE t.session_id = b.session_id AND t.branch_id = b.merged_into)""",
            "forks of a missing parent": f"""SELECT count(*) FROM {s}.branches b
                WHERE b.parent_branch IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {s}.branches p
                    WHERE p.session_id = b.session_id AND p.branch_id = b.parent_branch)""",
        }
        for name, sql in checks.items():
            assert await admin.fetchval(sql) == 0, name
        for session in await one.list_sessions():
            for branch in await one.list_branches(session):
                history = await two.read(session, branch.branch_id)
                assert [r.sequence for r in history] == list(range(1, branch.head + 1))


# -- the lifecycle contract, its erasure checks reading every table ----------------------


class TestLifecycleContractOverEveryTable(LifecycleContract):
    """The contract's erasure checks, here searching every row of the store's schema."""

    @pytest.fixture
    async def store_factory(self, request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
        async for factory in _postgres_factory(request):
            yield factory

    async def residue(self, store: EventStore, marker: bytes) -> list[str] | None:
        assert isinstance(store, PostgresEventStore)
        conn = await asyncpg.connect(PG_DSN)
        try:
            tables = await every_row_as_text(conn, store.schema)
        finally:
            await conn.close()
        text = marker.decode()
        return [f"{name}: {row}" for name, rows in tables.items() for row in rows if text in row]


# -- the lifecycle and the global feed together -----------------------------------------


async def test_append_next_obeys_the_lifecycle(schema: str) -> None:
    async with make_store(schema) as store:
        (first,) = await store.append_next([ev("s1", 9)])  # main of a new session: created
        assert first.sequence == 1
        assert [info.session_id for info in await store.sessions()] == ["s1"]
        with pytest.raises(BranchNotFound):
            await store.append_next([ev("s1", 1, branch="nope")])
        with pytest.raises(BranchNotFound):
            await store.append_next([ev("s2", 1, branch="nope")])
        assert [b.branch_id for b in await store.list_branches("s1")] == ["main"]
        await store.create_branch("s1", "side")
        (side,) = await store.append_next([ev("s1", 1, branch="side")])
        assert (side.sequence, side.position > first.position) == (2, True)
        await store.close_branch("s1", "side")
        with pytest.raises(BranchClosed):
            await store.append_next([ev("s1", 1, branch="side")])
        with pytest.raises(BranchClosed):
            await store.append(ev("s1", 3, branch="side"))
        await store.close_branch("s1")
        with pytest.raises(BranchClosed):
            await store.append_next([ev("s1", 1)])
        assert [info.session_id for info in await store.sessions()] == ["s1"]
        assert await store.read_feed() == [first, side]


async def test_a_deleted_session_leaves_the_feed(schema: str) -> None:
    async with make_store(schema) as store:
        gone = await store.append_batch([ev("gone", 1), ev("gone", 2)])
        kept = await store.append_next([ev("kept", 1)])
        assert await store.read_feed() == [*gone, *kept]
        assert await store.delete_session("gone")
        assert await store.read_feed() == kept
        assert await store.feed_head() == kept[0].position
        again = await store.append(ev("gone", 1))
        assert again.position > kept[0].position
        assert await store.read_feed(after=kept[0].position) == [again]


async def _write_next(store: EventStore, rng: random.Random, session: str) -> None:
    """Like _write, but appending with append_next half the time."""
    if rng.random() < 0.5:
        branch = rng.choice(["main", "main", "x", "y"])
        await store.append_next([ev(session, 1, branch=branch), ev(session, 1, branch=branch)])
    else:
        await _write(store, rng, session)


async def _next_writer(store: EventStore, rng: random.Random, sessions: list[str], ops: int) -> int:
    done = 0
    for _ in range(ops):
        try:
            await _write_next(store, rng, rng.choice(sessions))
            done += 1
        except _LOSSES:
            pass
    return done


async def test_feed_locks_and_lifecycle_locks_never_deadlock(schema: str, admin: Any) -> None:
    # Appends and append_next (branch lock, row, session row), merges (session
    # lock, target's branch lock, rows), closes and deletes (session lock, rows)
    # from two instances at once: a deadlock would surface as a StorageError.
    sessions = [f"lock{i}" for i in range(3)]
    async with make_store(schema) as one, make_store(schema) as two:
        *written, deleted = await asyncio.gather(
            *(_next_writer(one, random.Random(20 + seed), sessions, 100) for seed in range(3)),
            _next_writer(two, random.Random(30), sessions, 100),
            _deleter(two, random.Random(40), sessions, 50),
        )
        assert min(written) >= 10 and deleted >= 5, (written, deleted)
        s = f'"{schema}"'
        # Within a branch, a later sequence always has a larger position; none repeats.
        assert not await admin.fetchval(
            f"""SELECT count(*) FROM (
                SELECT position, lag(position) OVER (
                    PARTITION BY session_id, branch_id ORDER BY sequence) AS before
                FROM {s}.events) x WHERE x.before >= x.position"""
        )
        assert not await admin.fetchval(
            f"SELECT count(*) - count(DISTINCT position) FROM {s}.events"
        )
        feed = await one.read_feed()
        assert len(feed) == await admin.fetchval(f"SELECT count(*) FROM {s}.events")
        assert [r.position for r in feed] == sorted(r.position for r in feed)
