"""The store state machine over ``PostgresEventStore``: one fresh schema per example."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from eventstore.testing import store_state_machine
from tests.conftest import PG_DSN

PG_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)


async def _drop(schemas: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def schemas() -> Iterator[list[str]]:
    """Names the test creates; all dropped afterwards. Never skips under ``CI=true``."""
    try:
        asyncio.run(_drop([]))
    except Exception as exc:  # no driver, no server, refused: all "unavailable"
        reason = f"PostgreSQL unavailable at {PG_DSN}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    created: list[str] = []
    yield created
    asyncio.run(_drop(created))


def test_postgres_store_machine(schemas: list[str]) -> None:
    from eventstore.postgres import PostgresEventStore

    prefix = f"sm_{secrets.token_hex(4)}"
    counter = itertools.count()

    def fresh() -> PostgresEventStore:
        schemas.append(f"{prefix}_{next(counter)}")
        return PostgresEventStore(PG_DSN, schema=schemas[-1], min_size=1, max_size=2)

    def reopen(old: PostgresEventStore) -> PostgresEventStore:
        return PostgresEventStore(PG_DSN, schema=old.schema, min_size=1, max_size=2)

    run_state_machine_as_test(store_state_machine(fresh, reopen=reopen), settings=PG_SETTINGS)
