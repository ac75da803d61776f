"""The store state machine over ``PostgresEventStore``: a fresh schema per example.

Uses ``EVENTJOURNAL_PG_DSN`` (default: the local test server). Without a server
the test skips, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from eventstore.testing import store_state_machine

PG_DSN = os.environ.get("EVENTJOURNAL_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

#: See test_state_machine_file.py for why CI runs do not shrink.
PG_SETTINGS = settings(
    max_examples=500,
    stateful_step_count=15,
    deadline=None,
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


async def _drop(schemas: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        # A few schemas per statement: all at once needs a lock per table and
        # exhausts the server's lock table.
        for start in range(0, len(schemas), 25):
            names = ", ".join(f'"{schema}"' for schema in schemas[start : start + 25])
            await conn.execute(f"DROP SCHEMA IF EXISTS {names} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def schemas() -> Iterator[list[str]]:
    """Schema names the test creates; all dropped afterwards."""
    created: list[str] = []
    try:
        asyncio.run(_drop([]))
    except (ImportError, OSError) as exc:
        reason = f"PostgreSQL unavailable at {PG_DSN}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield created
    asyncio.run(_drop(created))


def test_postgres_store_machine(schemas: list[str]) -> None:
    from eventstore.postgres import PostgresEventStore

    def fresh() -> PostgresEventStore:
        schemas.append(f"machine_{secrets.token_hex(6)}")
        return PostgresEventStore(PG_DSN, schema=schemas[-1], min_size=1, max_size=2)

    def reopen(old: PostgresEventStore) -> PostgresEventStore:
        return PostgresEventStore(PG_DSN, schema=old.schema, min_size=1, max_size=2)

    run_state_machine_as_test(store_state_machine(fresh, reopen=reopen), settings=PG_SETTINGS)
