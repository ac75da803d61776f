"""PostgreSQL's side of the issue-18 primitives: the version-5 migration and its
index, keys too long for a btree entry, ``copy_session`` in one transaction, and
other instances hearing of a copy."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from eventstore import MAIN, EventRecord, StorageError
from eventstore.postgres import PostgresEventStore
from eventstore.postgres._schema import _MIGRATIONS, SCHEMA_VERSION
from tests.conftest import PG_DSN


def ev(session: str, seq: int, branch: str = MAIN, key: Any = None) -> EventRecord:
    metadata = {} if key is None else {"key": key}
    return EventRecord.new(session, branch, seq, "message", {"n": seq}, metadata=metadata)


def make_store(schema: str) -> PostgresEventStore:
    return PostgresEventStore(PG_DSN, schema=schema, min_size=1, max_size=4)


async def test_a_version_4_schema_gains_the_key_index(schema: str, admin: Any) -> None:
    assert SCHEMA_VERSION == 5
    s = f'"{schema}"'
    await admin.execute(f"CREATE SCHEMA {s}")
    await admin.execute(
        f"CREATE TABLE {s}.schema_version (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version in range(4):
        await admin.execute(_MIGRATIONS[version].format(s=s))
        await admin.execute(f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version + 1)
    await admin.execute(
        f"""
        INSERT INTO {s}.branches (session_id, branch_id, parent_branch, fork_sequence, head,
                                  created_at, updated_at)
        VALUES ('s1', 'main', NULL, 0, 3, now(), now());
        INSERT INTO {s}.sessions VALUES ('s1', now(), now());
        INSERT INTO {s}.events (session_id, branch_id, sequence, event_id, kind, data,
                                metadata, recorded_at, position) VALUES
          ('s1', 'main', 1, 'e1', 'k', '1', '{{"key": "ckpt"}}', now(), 1),
          ('s1', 'main', 2, 'e2', 'k', '2', '{{"key": 7}}', now(), 2),
          ('s1', 'main', 3, 'e3', 'k', '3', '{{"key": "ckpt"}}', now(), 3);
        """
    )
    async with make_store(schema) as store:
        assert await admin.fetchval(f"SELECT max(version) FROM {s}.schema_version") == 5
        found = await store.get_by_key("s1", "ckpt")
        assert found is not None and found.event_id == "e3"
        assert await store.get_by_key("s1", "7") is None
        e2 = await store.get_event("s1", "e2")
        assert e2 is not None and e2.metadata == {"key": 7}
    indexes = {
        row["indexname"]: row["indexdef"]
        for row in await admin.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", schema
        )
    }
    assert "md5" in indexes["events_key"] and "WHERE" in indexes["events_key"]


@pytest.mark.parametrize(
    ("statement", "index"),
    [("by_key", "events_key"), ("by_event_id", "events_event_id_key")],
)
async def test_lookups_use_their_index(schema: str, statement: str, index: str) -> None:
    async with make_store(schema) as store:
        for n in range(20):
            await store.append_batch([ev(f"s{n}", i, key=f"k{i}") for i in range(1, 51)])
        async with store._pool.acquire() as conn:
            await conn.execute("ANALYZE")
            sql = getattr(store._sql, statement)
            plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {sql}", "s7", "k30"))
        assert index in plan, plan


async def test_a_key_longer_than_a_btree_entry(schema: str) -> None:
    key = "x" * 10_000 + "-end"
    async with make_store(schema) as store:
        stored = await store.append(ev("s", 1, key=key))
        assert await store.get_by_key("s", key) == stored
        assert await store.get_by_key("s", key[:-1]) is None


async def test_a_failed_copy_leaves_nothing(schema: str, admin: Any) -> None:
    async with make_store(schema) as store:
        await store.append_batch([ev("src", n, key=f"k{n}") for n in (1, 2, 3)])
        await store.create_branch("src", "b", fork_sequence=2)
        await store.append(ev("src", 3, "b"))
        # The events insert fails after the branch rows went in: all of it rolls back.
        store._sql.copy_events = "SELECT 1 / 0"
        with pytest.raises(StorageError):
            await store.copy_session("src", "dst")
        s = f'"{schema}"'
        for table in ("branches", "events", "sessions"):
            count = await admin.fetchval(
                f"SELECT count(*) FROM {s}.{table} WHERE session_id = 'dst'"
            )
            assert count == 0, table
        assert await store.list_sessions() == ["src"]


class Heard:
    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self.arrived = asyncio.Event()

    def committed(self, records: Sequence[EventRecord]) -> None:
        self.records.extend(records)
        self.arrived.set()


async def test_another_instance_hears_of_a_copy(schema: str) -> None:
    async with make_store(schema) as one, make_store(schema) as two:
        # Interleaved writes: the copy's positions make several runs per branch.
        await one.append(ev("src", 1))
        await one.create_branch("src", "b")
        for n in range(2, 6):
            await one.append(ev("src", n))
            await one.append(ev("src", n, "b"))
        heard, here = Heard(), Heard()
        two.add_listener(heard)
        one.add_listener(here)
        await two.listening()
        await one.copy_session("src", "dst")
        # The feed shows them once every older transaction on the server ended
        # (other tests' included): wait for that.
        async with asyncio.timeout(30):
            while len(copied := await one.read_feed(session_ids=["dst"])) < 9:
                await asyncio.sleep(0.05)
        assert len(copied) == 9
        assert here.records == copied
        async with asyncio.timeout(30):
            while {r.event_id for r in heard.records} != {r.event_id for r in copied}:
                heard.arrived.clear()
                await heard.arrived.wait()
        assert sorted(heard.records, key=lambda r: r.position) == copied
