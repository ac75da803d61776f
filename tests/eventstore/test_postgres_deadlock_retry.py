"""A write PostgreSQL picks as a deadlock's victim rolled back whole: it runs again."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from eventstore import EventRecord, StorageError
from eventstore.postgres import PostgresEventStore

from .test_postgres_lifecycle import make_store

pytestmark = pytest.mark.postgres


def _deadlocking(times: int) -> Any:
    real = PostgresEventStore._insert
    left = [times]

    async def insert(self: PostgresEventStore, *args: Any, **kwargs: Any) -> Any:
        if left[0]:
            left[0] -= 1
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        return await real(self, *args, **kwargs)

    return insert


async def test_a_deadlock_victim_is_run_again(
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_store(schema) as store:
        monkeypatch.setattr(PostgresEventStore, "_insert", _deadlocking(2))
        stored = await store.append(EventRecord.new("s1", "main", 1, "k"))
        assert stored.sequence == 1
        assert [r.event_id for r in await store.read("s1")] == [stored.event_id]


async def test_a_deadlock_that_persists_is_a_storage_error(
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_store(schema) as store:
        monkeypatch.setattr(PostgresEventStore, "_insert", _deadlocking(99))
        with pytest.raises(StorageError, match="deadlock"):
            await store.append(EventRecord.new("s1", "main", 1, "k"))
        assert await store.read("s1") == []
