"""A branch closed, or a session deleted, by another process ends this process's
subscriptions: no commit announces those, so an idle subscription asks the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import stream._subscription as subscription
from eventstore import EventRecord
from eventstore.file import FileEventStore
from journal import EventJournal

from ..conftest import PG_DSN


@pytest.fixture(autouse=True)
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscription, "ELSEWHERE_CHECK", 0.05)


async def _collect(journal: EventJournal, branch: str = "main") -> list[int]:
    async with journal.subscribe("s1", branch) as live:
        return [event.sequence async for event in live]


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[EventJournal, EventJournal]]:
    """A writer's journal and a reader's journal over one root (as two processes would)."""
    async with EventJournal(FileEventStore(tmp_path)) as writer:
        await writer.record("s1", "started")
        async with EventJournal(FileEventStore(tmp_path, read_only=True)) as reader:
            yield writer, reader


async def test_a_branch_closed_by_the_writer_ends_a_readers_subscription(
    pair: tuple[EventJournal, EventJournal],
) -> None:
    writer, reader = pair
    following = asyncio.create_task(_collect(reader))
    await asyncio.sleep(0.1)
    await writer.record("s1", "step")
    await writer.close_branch("s1")
    assert await asyncio.wait_for(following, 5) == [1, 2]


async def test_a_session_deleted_by_the_writer_ends_a_readers_subscription(
    pair: tuple[EventJournal, EventJournal],
) -> None:
    writer, reader = pair
    following = asyncio.create_task(_collect(reader))
    await asyncio.sleep(0.1)
    await writer.delete_session("s1")
    assert await asyncio.wait_for(following, 5) == [1]


async def test_a_branch_that_does_not_exist_yet_is_waited_for(
    pair: tuple[EventJournal, EventJournal],
) -> None:
    writer, reader = pair
    following = asyncio.create_task(_collect(reader, "later"))
    await asyncio.sleep(0.2)
    assert not following.done()
    await writer.create_branch("s1", "later")
    await writer.append(EventRecord.new("s1", "later", 2, "step"))
    await writer.close_branch("s1", "later")
    assert await asyncio.wait_for(following, 5) == [1, 2]


@pytest.mark.postgres
async def test_postgres_close_in_another_instance_ends_the_subscription() -> None:
    import secrets

    import asyncpg

    from eventstore.postgres import PostgresEventStore

    schema = f"test_{secrets.token_hex(8)}"
    try:
        async with (
            EventJournal(PostgresEventStore(PG_DSN, schema=schema)) as one,
            EventJournal(PostgresEventStore(PG_DSN, schema=schema)) as two,
        ):
            await one.record("s1", "started")
            following = asyncio.create_task(_collect(two))
            await asyncio.sleep(0.1)
            await one.record("s1", "step")
            await one.close_branch("s1")
            assert await asyncio.wait_for(following, 5) == [1, 2]
    finally:
        admin = await asyncpg.connect(PG_DSN)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
