"""Shared fixtures: one ``store_factory`` parametrized over every backend.

``store_factory()`` returns a fresh, unopened store; for the persistent backends
calling it again gives a store over the same data (a reopen).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from eventstore import EventStore, MemoryEventStore

StoreFactory = Callable[[], EventStore]

BACKENDS = ["memory", "file", "postgres"]

#: The PostgreSQL server the postgres backend tests use.
PG_DSN = os.environ.get("EVENTJOURNAL_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _file_factory(root: Path) -> StoreFactory:
    # Owned by the file-store work: a FileEventStore over one temporary root.
    from eventstore.file import FileEventStore

    return lambda: FileEventStore(root)


async def _postgres_factory(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    # Owned by the Postgres work: each test gets its own schema, dropped afterwards.
    # With CI=true this must never skip: an unreachable server fails the test.
    import secrets

    def unavailable(exc: BaseException) -> None:
        reason = f"PostgreSQL unavailable at {PG_DSN}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)

    try:
        import asyncpg

        from eventstore.postgres import PostgresEventStore
    except ImportError as exc:
        unavailable(exc)
    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(exc)
    schema = f"test_{secrets.token_hex(8)}"
    try:
        yield lambda: PostgresEventStore(PG_DSN, schema=schema, min_size=1, max_size=4)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


async def _factory(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    if backend == "memory":
        yield MemoryEventStore
    elif backend == "file":
        yield _file_factory(tmp_path / "store")
    else:
        async for factory in _postgres_factory(request):
            yield factory


@pytest.fixture(params=BACKENDS)
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """A callable returning a fresh, unopened store of the parametrized backend."""
    async for factory in _factory(request.param, request, tmp_path):
        yield factory


@pytest.fixture(params=[b for b in BACKENDS if b != "memory"])
async def persistent_store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Like ``store_factory``, over the backends whose data outlives the store object."""
    async for factory in _factory(request.param, request, tmp_path):
        yield factory
