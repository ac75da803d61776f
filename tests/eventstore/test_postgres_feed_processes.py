"""The no-skip guarantee of the PostgreSQL feed, with transactions overlapping across processes.

Three writer processes append as fast as they can, each on its own
connections, while a fourth holds a transaction that wrote an event open (the
oldest transaction id, so the lowest position) and commits only after the
others committed hundreds of records above it. A poller in this process reads
``read_feed(after=last)`` the whole time. Any design that let the poller
advance past the held record before it committed (a ``bigserial`` position
does) would make it miss that record: the test checks the poller saw every
stored record, and that it really saw records committed above the held one
only after the hold ended.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.synchronize import Event
from typing import Any

import asyncpg
import pytest

from eventstore import EventRecord
from eventstore.postgres import PostgresEventStore, _store
from tests.conftest import PG_DSN, _postgres_factory
from tests.eventstore.test_postgres_feed import hold_transaction

WRITERS = 3
TASKS = 4
APPENDS = 40
DEADLINE = 60


def _writer(schema: str, number: int, go: Event) -> None:
    async def main() -> None:
        async with PostgresEventStore(PG_DSN, schema=schema, max_size=TASKS) as store:
            go.wait()

            async def task(t: int) -> None:
                session = f"w{number}-{t}"
                for n in range(1, APPENDS + 1):
                    await store.append(EventRecord.new(session, "main", n, "k", {"n": n}))

            await asyncio.gather(*(task(t) for t in range(TASKS)))

    asyncio.run(main())


def _holder(schema: str, holding: Event, release: Event) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await hold_transaction(conn, schema, "held")
            holding.set()
            while not release.is_set():
                await asyncio.sleep(0.01)
            await conn.execute("COMMIT")
        finally:
            await conn.close()

    asyncio.run(main())


async def test_a_poller_misses_nothing_while_processes_commit_out_of_order(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the held transaction is open every read would wait for it; let it
    # give up quickly so the poller keeps polling (and keeps not advancing).
    monkeypatch.setattr(_store, "CATCH_UP_SECONDS", 0.05)
    ctx = multiprocessing.get_context("spawn")
    async for factory in _postgres_factory(request):
        schema = factory().schema  # type: ignore[attr-defined]
        async with PostgresEventStore(PG_DSN, schema=schema) as store:
            await store.append(EventRecord.new("first", "main", 1, "k"))
            go, holding, release = ctx.Event(), ctx.Event(), ctx.Event()
            holder = ctx.Process(target=_holder, args=(schema, holding, release))
            holder.start()
            writers = [ctx.Process(target=_writer, args=(schema, n, go)) for n in range(WRITERS)]
            for process in writers:
                process.start()
            try:
                await asyncio.to_thread(holding.wait, DEADLINE)
                assert holding.is_set(), "the holding process never began"
                go.set()
                seen: list[EventRecord] = []
                last = 0
                admin = await asyncpg.connect(PG_DSN)
                try:
                    held_position = await _poll_until_held_one_is_passed(
                        store, admin, schema, seen, release
                    )
                    last = seen[-1].position if seen else 0
                    async with asyncio.timeout(DEADLINE):
                        while any(p.is_alive() for p in writers) or holder.is_alive():
                            seen.extend(page := await store.read_feed(after=last))
                            last = page[-1].position if page else last
                            await asyncio.sleep(0.005)
                    seen.extend(await store.read_feed(after=last))
                    stored = await admin.fetchval(f'SELECT count(*) FROM "{schema}".events')
                finally:
                    await admin.close()
            finally:
                release.set()
                go.set()
                for process in [holder, *writers]:
                    await asyncio.to_thread(process.join, DEADLINE)
                    if process.is_alive():
                        process.kill()
            assert all(p.exitcode == 0 for p in [holder, *writers])
            positions = [r.position for r in seen]
            assert positions == sorted(set(positions)), "the feed went back or repeated"
            assert len(seen) == stored == 1 + 1 + WRITERS * TASKS * APPENDS
            assert held_position in positions


async def _poll_until_held_one_is_passed(
    store: PostgresEventStore, admin: Any, schema: str, seen: list[EventRecord], release: Any
) -> int:
    """Poll while the held transaction is open; release it once enough committed above it.

    Returns the held record's position once seen.
    """
    held = f'"{schema}".events'
    last = 0
    async with asyncio.timeout(DEADLINE):
        while True:
            page = await store.read_feed(after=last)
            seen.extend(page)
            last = page[-1].position if page else last
            committed_above = await admin.fetchval(
                f"SELECT count(*) FROM {held} WHERE session_id <> 'first'"
            )
            if committed_above >= WRITERS * TASKS * APPENDS // 2:
                break
            await asyncio.sleep(0.005)
    # Hundreds committed with positions above the held record, none delivered:
    # a feed ordered by commit would already have moved past it.
    assert [r.session_id for r in seen] == ["first"]
    release.set()
    async with asyncio.timeout(DEADLINE):
        while True:
            page = await store.read_feed(after=last)
            seen.extend(page)
            last = page[-1].position if page else last
            held_records = [r for r in seen if r.session_id == "held"]
            if held_records:
                assert seen[1] == held_records[0], "a record came before the held one"
                return held_records[0].position
            await asyncio.sleep(0.005)
