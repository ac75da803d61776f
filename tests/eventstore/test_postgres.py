"""PostgresEventStore beyond the contract suite: fidelity, schema, many processes, faults.

The contract suite runs over this backend through the ``postgres`` parameter of
``store_factory`` (tests/conftest.py). These tests need the server too and, like
the contract suite, fail instead of skipping when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventstore import EventRecord, SequenceConflict, StorageError
from tests.conftest import PG_DSN

if os.environ.get("CI", "").lower() in ("true", "1"):
    import asyncpg  # under CI a missing driver fails loudly, never skips
else:
    asyncpg = pytest.importorskip("asyncpg")

from eventstore.postgres import PostgresEventStore
from eventstore.postgres._schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
#: Upper bound for anything that waits on another process or the server.
DEADLINE = 60


def make_store(schema: str, app: str = "eventjournal", **kwargs: Any) -> PostgresEventStore:
    return PostgresEventStore(
        PG_DSN, schema=schema, server_settings={"application_name": app}, **kwargs
    )


def ev(session: str, seq: int, data: Any = None, branch: str = "main") -> EventRecord:
    return EventRecord.new(session, branch, seq, "message", {"n": seq} if data is None else data)


# -- fidelity and schema ------------------------------------------------------------


async def test_payloads_round_trip_exactly(schema: str) -> None:
    payloads = [
        {"nul": "a\x00b", "escaped": "\u2028\"'\\"},
        {"big": 1e20, "tiny": 1e-7, "huge": 1.7976931348623157e308, "neg": -0.0},
        {"int": 2**63 - 1, "float_int": 3.0, "order": {"z": 1, "a": 2}},
        None,
        [1, "two", None, True],
        "just a string",
    ]
    async with make_store(schema) as store:
        written = [ev("s1", n, data) for n, data in enumerate(payloads, start=1)]
        for record in written:
            await store.append(record)
        back = await store.read("s1")
    assert [msgspec.structs.replace(r, position=0) for r in back] == written
    for old, new in zip(written, back, strict=True):
        assert json.dumps(new.data) == json.dumps(old.data)  # types and key order too


async def test_schema_is_versioned_and_keyed_by_session(schema: str, admin: Any) -> None:
    async with make_store(schema):
        pass
    assert (
        await admin.fetchval(f'SELECT max(version) FROM "{schema}".schema_version')
        == SCHEMA_VERSION
    )
    keys = await admin.fetch(
        """SELECT c.relname, a.attname FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
        WHERE n.nspname = $1 AND c.relname IN ('events', 'branches')""",
        schema,
    )
    assert {row[0] for row in keys} == {"events", "branches"}
    # Every index leads with the session, but the global feed's (by position).
    assert {row[1] for row in keys} == {"session_id", "position"}


async def test_concurrent_first_opens_create_the_schema_once(schema: str) -> None:
    stores = [make_store(schema) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        await asyncio.gather(*(store.append(ev(f"s{i}", 1)) for i, store in enumerate(stores)))
        assert await stores[0].list_sessions() == ["s0", "s1", "s2", "s3"]
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_event_id_reused_at_another_position_is_refused(schema: str) -> None:
    async with make_store(schema) as store:
        first = await store.append(ev("s1", 1))
        clash = EventRecord("s1", "main", 2, "message", event_id=first.event_id)
        with pytest.raises(ValueError, match="event_id"):
            await store.append(clash)
        assert await store.head("s1") == 1


def test_bad_schema_names_are_refused() -> None:
    for bad in ("", "Public", "a-b", "x" * 49, '"; DROP', "1abc"):
        with pytest.raises(ValueError):
            PostgresEventStore(PG_DSN, schema=bad)


async def test_unreachable_server_is_a_storage_error() -> None:
    store = PostgresEventStore("postgresql://postgres@127.0.0.1:1/none", timeout=2)
    with pytest.raises(StorageError):
        await store.open()
    await store.close()


# -- many processes ------------------------------------------------------------------


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from tests.eventstore.test_postgres import child; child(sys.argv[1:])",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


def child(argv: list[str]) -> None:
    """Entry point of the helper processes: ``race`` writers and a ``subscribe``r."""
    role, schema, session, name, count = argv
    run = _race if role == "race" else _subscribe
    asyncio.run(run(schema, session, name, int(count)))


async def _race(schema: str, session: str, name: str, count: int) -> None:
    async with make_store(schema) as store:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        done = 0
        while done < count:
            head = await store.head(session)
            size = 1 if done % 3 else min(3, count - done)
            batch = [
                ev(session, head + 1 + k, {"writer": name, "i": done + k}) for k in range(size)
            ]
            try:
                await store.append_batch(batch)
            except SequenceConflict:
                continue
            done += size


async def _subscribe(schema: str, session: str, name: str, count: int) -> None:
    from journal import EventJournal

    # Opening the journal waits until the store listens: nothing committed is missed.
    async with make_store(schema) as store, EventJournal(store) as journal:
        async with journal.subscribe(session) as subscription:
            print("ready", flush=True)
            seen = []
            async for record in subscription:
                seen.append([record.sequence, record.data])
                if len(seen) == count:
                    break
        print(json.dumps(seen), flush=True)


async def _ready(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), DEADLINE)
    assert line == b"ready\n", line


async def test_four_processes_race_on_one_session(schema: str) -> None:
    per_writer = 30
    async with make_store(schema):
        pass  # create the schema before the race, so the race is only about appends
    writers = [await _spawn("race", schema, "shared", f"w{i}", str(per_writer)) for i in range(4)]
    for process in writers:
        await _ready(process)
    for process in writers:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    for process in writers:
        assert await asyncio.wait_for(process.wait(), DEADLINE) == 0
    async with make_store(schema) as store:
        history = await store.read("shared")
    assert [r.sequence for r in history] == list(range(1, 4 * per_writer + 1))
    for name in ("w0", "w1", "w2", "w3"):
        mine = [r.data["i"] for r in history if r.data["writer"] == name]
        assert mine == list(range(per_writer)), name


async def test_journal_subscriber_in_another_process_sees_every_event_in_order(
    schema: str,
) -> None:
    count = 60
    async with make_store(schema) as store:
        await store.append_batch([ev("live", n) for n in (1, 2, 3)])
        subscriber = await _spawn("subscribe", schema, "live", "sub", str(count))
        await _ready(subscriber)
        seq = 4
        while seq <= count:
            size = 1 if seq % 2 else min(5, count - seq + 1)
            await store.append_batch([ev("live", seq + k) for k in range(size)])
            seq += size
        assert subscriber.stdout is not None
        out = await asyncio.wait_for(subscriber.stdout.readline(), DEADLINE)
        assert await asyncio.wait_for(subscriber.wait(), DEADLINE) == 0
    assert json.loads(out) == [[n, {"n": n}] for n in range(1, count + 1)]


# -- listeners ----------------------------------------------------------------------


class _Heard:
    """A store listener that keeps ``(session, branch, sequence)`` of what it hears."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str, int]] = []
        self.changed = asyncio.Event()

    def committed(self, records: Any) -> None:
        self.keys.extend((r.session_id, r.branch_id, r.sequence) for r in records)
        self.changed.set()

    async def until(self, key: tuple[str, str, int]) -> None:
        async with asyncio.timeout(DEADLINE):
            while key not in self.keys:
                self.changed.clear()
                await self.changed.wait()


async def test_listeners_hear_other_instances_commits(schema: str) -> None:
    heard = _Heard()
    async with make_store(schema) as mine, make_store(schema) as other:
        remove = mine.add_listener(heard)
        await mine.listening()
        await mine.append(ev("own", 1))
        await other.append(ev("s1", 1))
        await other.append_batch([ev("s1", 2), ev("s1", 3)])
        await other.create_branch("s1", "alt", fork_sequence=1)
        await other.append(ev("s1", 2, branch="alt"))
        await heard.until(("s1", "alt", 2))
        remove()
    expected = [("s1", "main", 1), ("s1", "main", 2), ("s1", "main", 3), ("s1", "alt", 2)]
    assert heard.keys[0] == ("own", "main", 1)  # before its append returned
    assert sorted(set(heard.keys[1:])) == sorted(expected)


async def test_listening_resumes_after_its_connection_is_killed(schema: str, admin: Any) -> None:
    app = f"ej-{schema}"
    heard = _Heard()
    async with make_store(schema, app) as mine, make_store(schema) as other:
        remove = mine.add_listener(heard)
        await mine.listening()
        await other.append(ev("s1", 1))
        await heard.until(("s1", "main", 1))
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            app,
        )
        assert killed >= 1
        await other.append(ev("s1", 2))
        # By notification if the new LISTEN was up in time, else by the re-read
        # after reconnecting (at least once: sequence 1 may be heard again).
        await heard.until(("s1", "main", 2))
        remove()
        assert set(heard.keys) == {("s1", "main", 1), ("s1", "main", 2)}


# -- faults --------------------------------------------------------------------------


async def _wait_for(predicate: Callable[[], Any]) -> None:
    # Another backend's state can only be observed by asking the server.
    async with asyncio.timeout(DEADLINE):
        while not await predicate():
            await asyncio.sleep(0.01)


async def test_killed_connection_mid_batch_leaves_nothing_and_recovers(
    schema: str, admin: Any
) -> None:
    app = f"ej-{schema}"
    async with make_store(schema, app, max_size=2) as store:
        await store.append_batch([ev("s1", n) for n in (1, 2)])
        # Hold the branch row so the batch is provably in flight when its backend dies.
        blocker = await asyncpg.connect(PG_DSN)
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute(
                f'SELECT 1 FROM "{schema}".branches WHERE session_id = $1 FOR UPDATE', "s1"
            )
            batch = asyncio.create_task(store.append_batch([ev("s1", n) for n in range(3, 53)]))

            async def waiting() -> bool:
                return bool(
                    await admin.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                        " AND wait_event_type = 'Lock'",
                        app,
                    )
                )

            await _wait_for(waiting)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1",
                app,
            )
            with pytest.raises(StorageError):
                await batch
            await tx.rollback()
        finally:
            await blocker.close()
        assert await store.head("s1") == 2
        assert [r.sequence for r in await store.read("s1")] == [1, 2]
        await store.append_batch([ev("s1", n) for n in (3, 4)])
        assert await store.head("s1") == 4


async def test_server_side_kill_of_idle_connections_is_survived(schema: str, admin: Any) -> None:
    app = f"ej-{schema}"
    async with make_store(schema, app, min_size=2, max_size=2) as store:
        await store.append(ev("s1", 1))
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            app,
        )

        async def gone() -> bool:
            count = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app
            )
            return count == 0

        await _wait_for(gone)
        # A pooled connection whose death the client has not noticed yet fails
        # its next use with a typed error and is replaced: at most one per slot.
        failures = 0
        for _ in range(3):
            try:
                await store.append(ev("s1", 2))
                break
            except StorageError:
                failures += 1
        assert failures <= 2
        assert [r.sequence for r in await store.read("s1")] == [1, 2]


async def test_newer_schema_is_refused_and_open_can_be_retried(schema: str, admin: Any) -> None:
    async with make_store(schema):
        pass
    await admin.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (99)')
    store = make_store(schema)
    with pytest.raises(StorageError, match="version 99"):
        await store.open()
    await admin.execute(f'DELETE FROM "{schema}".schema_version WHERE version = 99')
    async with store:
        await store.append(ev("s1", 1))
        assert await store.head("s1") == 1
