"""The PostgreSQL global feed and committed ranges, beyond the contract suite.

Positions from transaction ids, the horizon that holds readers back while an
older transaction is open, the migrations from schema versions 1 and 2, and the
listener: one read per committed range, own commits delivered once, a flood
collapsed into a re-read, a lost connection recovered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from eventstore import EventRecord
from eventstore.postgres import PostgresEventStore, _listen, _store
from eventstore.postgres._listen import notice_prefix
from eventstore.postgres._schema import _MIGRATIONS, SCHEMA_VERSION, Statements
from tests.conftest import PG_DSN

DEADLINE = 30


def make_store(schema: str, app: str = "eventjournal") -> PostgresEventStore:
    return PostgresEventStore(PG_DSN, schema=schema, server_settings={"application_name": app})


def ev(session: str, seq: int, branch: str = "main", kind: str = "message") -> EventRecord:
    return EventRecord.new(session, branch, seq, kind, {"n": seq})


class Collector:
    """A store listener keeping every delivered batch."""

    def __init__(self) -> None:
        self.batches: list[list[EventRecord]] = []
        self.changed = asyncio.Event()

    def committed(self, records: Sequence[EventRecord]) -> None:
        self.batches.append(list(records))
        self.changed.set()

    @property
    def ids(self) -> list[str]:
        return [r.event_id for batch in self.batches for r in batch]

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def hold_transaction(conn: Any, schema: str, session: str) -> None:
    """Begin a transaction that writes one event and stays open (an xid, a row)."""
    sql = Statements(schema, f"{schema}.events")
    await conn.execute("BEGIN")
    event = ev(session, 1)
    await conn.fetchrow(
        sql.append_new,
        session,
        "main",
        1,
        [event.event_id],
        [event.kind],
        ['{"n": 1}'],
        ["{}"],
        [event.recorded_at],
        notice_prefix("held", session, "main"),
    )


# -- positions ----------------------------------------------------------------------


async def test_positions_come_from_the_writing_transaction(schema: str) -> None:
    async with make_store(schema) as store:
        batch = await store.append_batch([ev("s1", 1), ev("s1", 2), ev("s1", 3)])
        single = await store.append(ev("s2", 1))
        positions = [r.position for r in batch]
        assert positions == list(range(positions[0], positions[0] + 3))
        assert positions[0] % (1 << 20) == 0
        assert single.position > positions[-1]
        assert [r.position for r in await store.read("s1")] == positions
        assert await store.read_feed() == [*batch, single]
        assert await store.feed_head() == single.position
        # A retry returns the stored records, positions included.
        assert await store.append_batch(batch) == batch


async def test_forks_inherit_positions_and_merges_get_new_ones(schema: str) -> None:
    async with make_store(schema) as store:
        base = await store.append(ev("s1", 1))
        await store.create_branch("s1", "b")
        own = await store.append(ev("s1", 2, branch="b"))
        assert [r.position for r in await store.read("s1", "b")] == [base.position, own.position]
        await store.merge_branch("s1", "b", "main")
        merged = (await store.read("s1"))[-1]
        assert merged.event_id != own.event_id and merged.position > own.position
        assert (await store.read_feed())[-1] == merged


async def test_feed_filters_and_limits_run_in_sql(schema: str) -> None:
    async with make_store(schema) as store:
        for n in range(1, 7):
            await store.append_next([ev(f"s{n % 2}", 1, kind=f"k{n % 3}")])
        everything = await store.read_feed()
        assert [r.position for r in everything] == sorted(r.position for r in everything)
        assert await store.read_feed(kinds=["k1"]) == [r for r in everything if r.kind == "k1"]
        assert await store.read_feed(session_ids={"s0"}, kinds=("k0", "k2")) == [
            r for r in everything if r.session_id == "s0" and r.kind in ("k0", "k2")
        ]
        assert await store.read_feed(everything[1].position, 2) == everything[2:4]


async def test_one_branch_appended_concurrently_keeps_sequence_order_in_the_feed(
    schema: str,
) -> None:
    async with make_store(schema) as store:
        await store.append(ev("s1", 1))

        async def writer() -> None:
            for _ in range(15):
                await store.append_next([ev("s1", 1)])

        await asyncio.gather(*(writer() for _ in range(6)))
        feed = await store.read_feed()
        assert [r.sequence for r in feed] == list(range(1, 92))


# -- the horizon ----------------------------------------------------------------------


async def test_an_open_older_transaction_holds_the_feed_back_until_it_ends(
    schema: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "CATCH_UP_SECONDS", 0.1)
    async with make_store(schema) as store:
        first = await store.append(ev("s0", 1))
        await hold_transaction(admin, schema, "held")
        later = await store.append(ev("s1", 1))
        # Committed, and readable by branch, but not in the feed yet: the held
        # transaction may still commit a lower position.
        assert await store.read("s1") == [later]
        assert await store.read_feed() == [first]
        assert await store.feed_head() == first.position
        await admin.execute("COMMIT")
        feed = await store.read_feed(after=first.position)
        assert [r.session_id for r in feed] == ["held", "s1"]
        assert feed[0].position < later.position
        assert await store.feed_head() == later.position


async def test_a_feed_read_waits_for_transactions_open_when_it_began(
    schema: str, admin: Any
) -> None:
    async with make_store(schema) as store:
        await hold_transaction(admin, schema, "held")
        later = await store.append(ev("s1", 1))
        reading = asyncio.create_task(store.read_feed())
        await asyncio.sleep(0.1)
        assert not reading.done()
        await admin.execute("COMMIT")
        assert [r.session_id for r in await reading] == ["held", "s1"]
        assert (await reading)[-1] == later


# -- migration -----------------------------------------------------------------------


async def test_a_version_1_schema_migrates_and_keeps_its_positions(schema: str, admin: Any) -> None:
    s = f'"{schema}"'
    await admin.execute(f"CREATE SCHEMA {s}")
    await admin.execute(
        f"CREATE TABLE {s}.schema_version (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await admin.execute(_MIGRATIONS[0].format(s=s))
    await admin.execute(f"INSERT INTO {s}.schema_version (version) VALUES (1)")
    await admin.execute(
        f"INSERT INTO {s}.branches VALUES ('s1', 'main', NULL, 0, 2, now(), now(), NULL)"
    )
    await admin.execute(
        f"INSERT INTO {s}.events (session_id, branch_id, sequence, event_id, kind, data,"
        " metadata, recorded_at) VALUES ('s1', 'main', 1, 'e1', 'k', '1', '{}', now()),"
        " ('s1', 'main', 2, 'e2', 'k', '2', '{}', now())"
    )
    async with make_store(schema) as store:
        old = await store.read_feed()
        assert [(r.event_id, r.position) for r in old] == [("e1", 1), ("e2", 2)]
        new = await store.append(ev("s1", 3))
        assert new.position > 2
        assert await store.read_feed(after=2) == [new]
    assert await admin.fetchval(f"SELECT max(version) FROM {s}.schema_version") == SCHEMA_VERSION


async def test_a_version_2_schema_migrates_and_keeps_its_lifecycle(schema: str, admin: Any) -> None:
    """Version 2 (closed branches, sessions) as issue 14 left it, upgraded to the feed's 3."""
    assert SCHEMA_VERSION >= 3
    s = f'"{schema}"'
    await admin.execute(f"CREATE SCHEMA {s}")
    await admin.execute(
        f"CREATE TABLE {s}.schema_version (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version in (0, 1):
        await admin.execute(_MIGRATIONS[version].format(s=s))
        await admin.execute(f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version + 1)
    await admin.execute(
        f"""
        INSERT INTO {s}.branches VALUES
          ('s1', 'main', NULL, 0, 2, now(), now(), NULL, false, NULL),
          ('s1', 'side', 'main', 1, 1, now(), now(), NULL, true, now());
        INSERT INTO {s}.sessions VALUES ('s1', now(), now());
        INSERT INTO {s}.events (session_id, branch_id, sequence, event_id, kind, data,
                                metadata, recorded_at) VALUES
          ('s1', 'main', 1, 'e1', 'k', '1', '{{}}', now()),
          ('s1', 'main', 2, 'e2', 'k', '2', '{{}}', now());
        """
    )
    async with make_store(schema) as store:
        old = await store.read_feed()
        assert [(r.event_id, r.position) for r in old] == [("e1", 1), ("e2", 2)]
        assert (await store.branch_info("s1", "side")).closed
        new = await store.append(ev("s1", 3))
        assert new.position > 2
        assert await store.read_feed(after=2) == [new]
        (info,) = await store.sessions()
        assert (info.session_id, info.branches, info.events) == ("s1", 2, 3)
        assert await store.delete_session("s1")
        assert await store.read_feed() == []
    versions = await admin.fetch(f"SELECT version FROM {s}.schema_version ORDER BY version")
    assert [row[0] for row in versions] == list(range(1, SCHEMA_VERSION + 1))


# -- committed ranges ----------------------------------------------------------------


async def test_another_instances_batch_arrives_as_one_range_read_once(schema: str) -> None:
    async with make_store(schema) as mine, make_store(schema) as theirs:
        seen = Collector()
        remove = mine.add_listener(seen)
        await mine.listening()
        batch = await theirs.append_batch([ev("s1", n) for n in range(1, 1001)])
        await seen.until(lambda: len(seen.ids) >= 1000)
        assert seen.batches == [batch]
        remove()


async def test_own_commits_are_delivered_once_before_the_write_returns(schema: str) -> None:
    async with make_store(schema) as mine, make_store(schema) as theirs:
        seen = Collector()
        mine.add_listener(seen)
        await mine.listening()
        own = await mine.append_batch([ev("s1", 1), ev("s1", 2)])
        assert seen.batches == [own]
        # Their later commit arrives after our own notice would have: it was skipped.
        theirs_record = await theirs.append(ev("s2", 1))
        await seen.until(lambda: len(seen.batches) >= 2)
        await asyncio.sleep(0.05)
        assert seen.batches == [own, [theirs_record]]


async def test_a_flood_collapses_into_one_span_and_loses_nothing(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_listen, "MAX_QUEUED", 4)
    monkeypatch.setattr(_listen, "SPAN_PAGE", 7)
    async with make_store(schema) as mine, make_store(schema) as theirs:
        written = [await theirs.append(ev("s1", n)) for n in range(1, 41)]
        seen = Collector()
        mine.add_listener(seen)
        await mine.listening()
        listener = mine._listener
        # Forty notices at once, before the listener can read any: a flood.
        for record in written:
            prefix = notice_prefix("other", "s1", "main")
            seq = record.sequence
            listener._on_notify(None, 0, "", f"{prefix},{seq},{seq},{record.position}]")
            assert len(listener._queue) <= 4
        await seen.until(lambda: set(seen.ids) >= {r.event_id for r in written})
        delivered = [r for batch in seen.batches for r in batch]
        assert {r.event_id for r in delivered} == {r.event_id for r in written}
        assert max(len(batch) for batch in seen.batches) <= 7


async def test_a_lost_listen_connection_is_recovered_by_a_reread(
    schema: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_listen, "KEEPALIVE_SECONDS", 0.05)
    async with make_store(schema, app="h13pg-listener") as mine, make_store(schema) as theirs:
        seen = Collector()
        mine.add_listener(seen)
        await mine.listening()
        before = await theirs.append(ev("s1", 1))
        await seen.until(lambda: before.event_id in seen.ids)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'h13pg-listener'"
        )
        during = [await theirs.append(ev("s1", n)) for n in range(2, 6)]
        await seen.until(lambda: {r.event_id for r in during} <= set(seen.ids))
        after = await theirs.append(ev("s1", 6))
        await seen.until(lambda: after.event_id in seen.ids)


async def test_removing_the_last_listener_stops_listening(schema: str, admin: Any) -> None:
    async with make_store(schema, app="h13pg-stop") as store:
        remove = store.add_listener(Collector())
        await store.listening()
        remove()
        await asyncio.sleep(0.05)
        listening = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'h13pg-stop'"
            " AND query LIKE 'LISTEN%'"
        )
        assert listening == 0
        assert not store._listener.running


async def test_listening_waits_for_open_and_returns_at_once_without_listeners(
    schema: str,
) -> None:
    store = make_store(schema)
    seen = Collector()
    remove = store.add_listener(seen)
    assert not store._listener.running  # an unopened store is not opened behind its back
    async with store, make_store(schema) as theirs:
        await store.listening()
        written = await theirs.append(ev("s1", 1))
        await seen.until(lambda: seen.ids == [written.event_id])
        remove()
        await store.listening()  # no listener: at once
