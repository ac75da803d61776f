"""Consumer state on PostgreSQL (issue 15): the version-4 migration and a lease that lapses."""

from __future__ import annotations

import asyncio
from typing import Any

from eventstore.postgres import PostgresEventStore
from eventstore.postgres._schema import _MIGRATIONS, SCHEMA_VERSION
from tests.conftest import PG_DSN


async def test_a_version_3_schema_gains_the_consumer_tables(schema: str, admin: Any) -> None:
    assert SCHEMA_VERSION >= 4
    s = f'"{schema}"'
    await admin.execute(f"CREATE SCHEMA {s}")
    await admin.execute(
        f"CREATE TABLE {s}.schema_version (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version in range(3):
        await admin.execute(_MIGRATIONS[version].format(s=s))
        await admin.execute(f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version + 1)
    async with PostgresEventStore(PG_DSN, schema=schema) as store:
        state = await store.consumer_state("idx")
        await state.save_position(12)
        assert [(i.name, i.position) for i in await store.consumers()] == [("idx", 12)]
    assert await admin.fetchval(f"SELECT max(version) FROM {s}.schema_version") == SCHEMA_VERSION


async def test_a_lease_lapses_when_its_holder_stops_renewing(schema: str) -> None:
    async with (
        PostgresEventStore(PG_DSN, schema=schema) as one,
        PostgresEventStore(PG_DSN, schema=schema) as two,
    ):
        first, second = await one.consumer_state("idx"), await two.consumer_state("idx")
        assert await first.acquire("a", 0.3)
        assert not await second.acquire("b", 0.3)
        (info,) = await two.consumers()
        assert info.holder == "a" and info.lease_expires_at is not None
        await asyncio.sleep(0.4)
        assert (await two.consumers())[0].holder is None
        assert await second.acquire("b", 30)
        assert not await first.acquire("a", 30)
