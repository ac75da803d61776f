"""Fixtures of the PostgreSQL tests that work on a schema directly (beside ``store_factory``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import PG_DSN, _postgres_factory


@pytest.fixture
async def schema(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh schema name on a reachable server, dropped after the test."""
    async for factory in _postgres_factory(request):
        yield factory().schema  # type: ignore[attr-defined]


@pytest.fixture
async def admin() -> AsyncIterator[Any]:
    """A plain connection to the test server, for looking under the store."""
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    yield conn
    await conn.close()
