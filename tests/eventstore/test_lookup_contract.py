"""The issue-18 primitives on every backend: lookups, read_last, read_at, copy_session.

Run over ``store_factory`` (memory, file, PostgreSQL) and, for what must
survive a reopen, ``persistent_store_factory``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from eventstore import (
    MAIN,
    BranchExists,
    BranchNotFound,
    EventRecord,
    EventStore,
    InvalidBranchOperation,
    InvalidEvent,
    InvalidIdentifier,
)
from journal import EventJournal
from tests.conftest import StoreFactory


def ev(
    session: str,
    seq: int,
    kind: str = "message",
    *,
    branch: str = MAIN,
    key: Any = None,
    data: Any = None,
) -> EventRecord:
    metadata = {} if key is None else {"key": key}
    payload = {"n": seq, "on": branch} if data is None else data
    return EventRecord.new(session, branch, seq, kind, payload, metadata=metadata)


def content(record: EventRecord | None) -> tuple[Any, ...]:
    """What a copy keeps of a record: everything but the session and position."""
    assert record is not None
    return (
        record.branch_id,
        record.sequence,
        record.kind,
        record.data,
        record.metadata,
        record.event_id,
        record.recorded_at,
    )


def seqs(records: Sequence[EventRecord | None]) -> list[int | None]:
    return [None if r is None else r.sequence for r in records]


async def forked(store: EventStore, session: str = "s") -> dict[str, list[EventRecord]]:
    """main 1..6 (kinds alternate), fork ``b`` at 4 with 5..7, fork ``c`` of ``b`` at 5."""
    main = await store.append_batch(
        [ev(session, n, "tool" if n % 2 else "message") for n in range(1, 7)]
    )
    await store.create_branch(session, "b", fork_sequence=4)
    b = await store.append_batch(
        [ev(session, n, "tool" if n == 6 else "note", branch="b") for n in range(5, 8)]
    )
    await store.create_branch(session, "c", from_branch="b", fork_sequence=5)
    c = [await store.append(ev(session, 6, "message", branch="c"))]
    return {"main": main, "b": b, "c": c}


async def settled_feed(store: EventStore, after: int, count: int) -> list[EventRecord]:
    """``read_feed(after)`` once it holds ``count`` records: PostgreSQL shows them
    only when every older transaction on the server ended (other tests' too)."""
    async with asyncio.timeout(30):
        while len(found := await store.read_feed(after=after)) < count:
            await asyncio.sleep(0.05)
    return found


class Recorder:
    def __init__(self) -> None:
        self.records: list[EventRecord] = []

    def committed(self, records: Sequence[EventRecord]) -> None:
        self.records.extend(records)


# -- get_event -------------------------------------------------------------------


async def test_get_event_finds_records_on_every_branch(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        written = await forked(store)
        for records in written.values():
            for record in records:
                assert await store.get_event("s", record.event_id) == record
        assert await store.get_event("s", "no-such-id") is None
        assert await store.get_event("unknown", written["main"][0].event_id) is None
        assert await store.get_event("other", "x") is None


async def test_get_event_of_inherited_record_names_its_writer(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        written = await forked(store)
        inherited = (await store.read("s", "c", 2, to_sequence=2))[0]
        found = await store.get_event("s", inherited.event_id)
        assert found == inherited == written["main"][1]
        assert found is not None and found.branch_id == MAIN


async def test_get_event_sees_later_appends_and_merges(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        written = await forked(store)
        assert await store.get_event("s", "later") is None  # an index built now
        later = await store.append(EventRecord.new("s", MAIN, 7, "message", {}, event_id="later"))
        assert await store.get_event("s", "later") == later
        result = await store.merge_branch("s", "c", "b")
        merged = (await store.read("s", "b", 8))[0]
        assert result.merged_events == 1
        assert merged.metadata["merged_from"]["event_id"] == written["c"][0].event_id
        assert await store.get_event("s", merged.event_id) == merged


async def test_lookups_after_delete(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        written = await forked(store)
        c_id = written["c"][0].event_id
        b_id = written["b"][0].event_id
        assert await store.get_event("s", c_id) is not None
        await store.delete_branch("s", "c")
        assert await store.get_event("s", c_id) is None
        assert await store.get_event("s", b_id) is not None
        await store.delete_session("s")
        assert await store.get_event("s", b_id) is None
        assert await store.get_event("s", written["main"][0].event_id) is None
        # The id may be used again in the reborn session.
        again = await store.append(EventRecord.new("s", MAIN, 1, "k", {"new": True}, event_id=b_id))
        assert await store.get_event("s", b_id) == again


# -- get_by_key ------------------------------------------------------------------


async def test_get_by_key_returns_the_last_written(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        first = await store.append(ev("s", 1, key="ckpt-1"))
        await store.append(ev("s", 2, key="ckpt-2"))
        await store.create_branch("s", "b", fork_sequence=1)
        on_b = await store.append(ev("s", 2, branch="b", key="ckpt-1"))
        assert await store.get_by_key("s", "ckpt-1") == on_b
        assert (await store.get_by_key("s", "ckpt-2")) is not None
        assert await store.get_by_key("s", "nope") is None
        assert await store.get_by_key("other", "ckpt-1") is None
        # Deleting the branch of the last one brings back the earlier one.
        await store.delete_branch("s", "b")
        assert await store.get_by_key("s", "ckpt-1") == first
        await store.delete_session("s")
        assert await store.get_by_key("s", "ckpt-1") is None
        assert await store.get_by_key("s", "ckpt-2") is None


async def test_get_by_key_ignores_non_string_keys(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        await store.append(ev("s", 1, key=5))
        await store.append(ev("s", 2, key={"a": 1}))
        await store.append(ev("s", 3, key="5"))
        found = await store.get_by_key("s", "5")
        assert found is not None and found.sequence == 3
        assert await store.get_by_key("s", '{"a":1}') is None


async def test_get_by_key_other_sessions_do_not_leak(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        await store.append(ev("a", 1, key="k"))
        mine = await store.append(ev("b", 1, key="k"))
        await store.append(ev("a", 2, key="k"))
        assert await store.get_by_key("b", "k") == mine


async def test_lookups_survive_a_reopen(persistent_store_factory: StoreFactory) -> None:
    async with persistent_store_factory() as store:
        written = await forked(store)
        keyed = await store.append(ev("s", 8, branch="b", key="the-key"))
        await store.append(ev("s", 7, key="main-key"))
    async with persistent_store_factory() as store:
        # A fresh store: its indexes come from what is stored.
        for records in written.values():
            for record in records:
                assert await store.get_event("s", record.event_id) == record
        assert await store.get_by_key("s", "the-key") == keyed
        assert await store.get_event("s", keyed.event_id) == keyed
        assert await store.read_last("s", "c") == written["c"]
        assert seqs(await store.read_at("s", "c", [6, 1, 9])) == [6, 1, None]
        later = await store.append(ev("s", 9, branch="b", key="the-key"))
        assert await store.get_by_key("s", "the-key") == later
    async with persistent_store_factory() as store:
        assert await store.get_by_key("s", "the-key") == later


# -- read_last -------------------------------------------------------------------


async def test_read_last_newest_first(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        written = await forked(store)
        main = written["main"]
        assert await store.read_last("s") == [main[-1]]
        assert await store.read_last("s", limit=3) == main[:-4:-1]
        assert await store.read_last("s", limit=100) == main[::-1]
        assert await store.read_last("s", limit=2, to_sequence=3) == [main[2], main[1]]
        assert await store.read_last("s", to_sequence=100) == [main[-1]]
        assert await store.read_last("s", limit=0) == []
        assert await store.read_last("s", to_sequence=0) == []
        assert await store.read_last("s", kinds=[]) == []
        assert await store.read_last("unknown") == []
        assert await store.read_last("s", "unknown") == []


async def test_read_last_across_a_fork_point_with_kinds(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        written = await forked(store)
        main, b, c = written["main"], written["b"], written["c"]
        # c's history: main 1..4, b 5, c 6. Kinds: tool=1,3 (main); note=5 (b); message=2,4,6.
        assert await store.read_last("s", "c", kinds=["tool"], limit=5) == [main[2], main[0]]
        assert await store.read_last("s", "c", kinds={"note"}, limit=5) == [b[0]]
        assert await store.read_last("s", "c", kinds=("message",), limit=2) == [c[0], main[3]]
        assert await store.read_last("s", "c", kinds=["message", "note"], limit=10) == [
            c[0],
            b[0],
            main[3],
            main[1],
        ]
        # b's own tool at 6 and main's tools; main's 5 and 6 are not b's history.
        assert await store.read_last("s", "b", kinds=["tool"], limit=10) == [b[1], main[2], main[0]]
        assert await store.read_last("s", "b", kinds=["tool"], to_sequence=5) == [main[2]]
        assert await store.read_last("s", "c", kinds=["absent"]) == []


async def test_read_last_over_many_records(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        batch = [ev("s", n, "rare" if n in (3, 1500) else "common") for n in range(1, 2501)]
        await store.append_batch(batch)
        await store.create_branch("s", "b", fork_sequence=2000)
        await store.append(ev("s", 2001, "common", branch="b"))
        rare = await store.read_last("s", "b", kinds=["rare"], limit=5)
        assert seqs(rare) == [1500, 3]
        assert seqs(await store.read_last("s", "b", limit=3)) == [2001, 2000, 1999]
        assert seqs(await store.read_last("s", kinds=["rare"], to_sequence=1499)) == [3]


# -- read_at ---------------------------------------------------------------------


async def test_read_at_in_the_order_asked_with_holes(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        written = await forked(store)
        main, b, c = written["main"], written["b"], written["c"]
        got = await store.read_at("s", "c", [6, 0, 1, 7, 5, 1, 2**63 - 1])
        assert got == [c[0], None, main[0], None, b[0], main[0], None]
        assert await store.read_at("s", "b", iter([7, 4])) == [b[2], main[3]]
        assert await store.read_at("s", MAIN, []) == []
        assert await store.read_at("s", "unknown", [1, 2]) == [None, None]
        assert await store.read_at("unknown", MAIN, [1]) == [None]


# -- copy_session ----------------------------------------------------------------


async def branchy(store: EventStore) -> None:
    """main 1..4; ``b`` at 2 with 3..4, merged into main; ``c`` at 3, closed; ``d`` at 5."""
    await store.append_batch([ev("src", n, key=f"k{n}") for n in range(1, 5)])
    await store.create_branch("src", "b", fork_sequence=2)
    await store.append_batch([ev("src", n, branch="b", key=f"b{n}") for n in (3, 4)])
    await store.merge_branch("src", "b", MAIN)
    await store.create_branch("src", "c", fork_sequence=3)
    await store.append(ev("src", 4, branch="c"))
    await store.close_branch("src", "c")
    await store.create_branch("src", "d", fork_sequence=5)


async def test_copy_session_copies_every_branch(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        await branchy(store)
        heard = Recorder()
        store.add_listener(heard)
        written = [r for b in ("b", "c", MAIN) for r in await store.read("src", b)]
        before = max(r.position for r in written)
        infos = await store.copy_session("src", "dst")
        source = await store.list_branches("src")
        assert infos == await store.list_branches("dst")
        assert [i.branch_id for i in infos] == ["b", "c", "d", MAIN]
        for ours, theirs in zip(infos, source, strict=True):
            lineage = [
                (x.branch_id, x.parent_branch, x.fork_sequence, x.head, x.merged_into, x.closed)
                for x in (ours, theirs)
            ]
            assert lineage[0] == lineage[1]
            assert ours.session_id == "dst"
        for info in source:
            mine = await store.read("src", info.branch_id)
            copy = await store.read("dst", info.branch_id)
            assert [content(r) for r in copy] == [content(r) for r in mine]
            assert {r.session_id for r in copy} <= {"dst"}
        # New commits: in the feed after what was there, told to listeners.
        feed = await settled_feed(store, before, 9)
        assert {r.session_id for r in feed} == {"dst"}  # after every record of the source
        assert len(feed) == 9  # main 4 + 2 merged, b 2, c 1 (own records only)
        assert [r.position for r in feed] == sorted(r.position for r in feed)
        assert [r.event_id for r in heard.records] == [r.event_id for r in feed]
        assert await store.read_feed(after=before, session_ids=["dst"]) == feed
        # The copy's lookups work and the source stays as it was.
        for record in feed:
            assert await store.get_event("dst", record.event_id) == record
        found = await store.get_by_key("dst", "b4")
        assert found is not None and found.branch_id == MAIN  # the merged copy, written last
        assert await store.list_branches("src") == source
        # The copy takes appends and forks like any session.
        await store.append(ev("dst", 7))
        await store.create_branch("dst", "e", from_branch="d")
        with pytest.raises(BranchExists):
            await store.copy_session("src", "dst")


async def test_copy_outlives_its_source(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        await branchy(store)
        await store.copy_session("src", "dst")
        await store.copy_session("src", "one", branch_id="c")
        expected = {b: await store.read("dst", b) for b in ("b", "c", "d", MAIN)}
        single = await store.read("one")
        assert await store.delete_session("src")
        for branch, records in expected.items():
            assert await store.read("dst", branch) == records
        assert await store.read("one") == single
        assert len(single) == 4


async def test_copy_one_branch_into_main(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        await branchy(store)
        history = await store.read("src", "c")
        infos = await store.copy_session("src", "one", branch_id="c")
        assert [
            (i.branch_id, i.parent_branch, i.fork_sequence, i.head, i.closed) for i in infos
        ] == [(MAIN, None, 0, 4, False)]
        copy = await store.read("one")
        assert [r.branch_id for r in copy] == [MAIN] * 4
        assert [
            msgspec.structs.replace(r, session_id="src", branch_id="x", position=0) for r in copy
        ] == [msgspec.structs.replace(r, branch_id="x", position=0) for r in history]
        await store.append(ev("one", 5))  # open, though the source branch was closed
        part = await store.copy_session("src", "part", branch_id=MAIN, to_sequence=3)
        assert part[0].head == 3
        assert [content(r)[1:] for r in await store.read("part")] == [
            content(r)[1:] for r in await store.read("src", MAIN, to_sequence=3)
        ]
        empty = await store.copy_session("src", "empty", branch_id=MAIN, to_sequence=0)
        assert [(i.branch_id, i.head) for i in empty] == [(MAIN, 0)]


async def test_copy_session_errors(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        await branchy(store)
        await store.append(ev("taken", 1))
        with pytest.raises(BranchExists) as exists:
            await store.copy_session("src", "taken")
        assert (exists.value.session_id, exists.value.branch_id) == ("taken", MAIN)
        with pytest.raises(BranchExists):
            await store.copy_session("src", "src")
        with pytest.raises(BranchNotFound) as missing:
            await store.copy_session("nothing", "new")
        assert missing.value.session_id == "nothing"
        with pytest.raises(BranchNotFound):
            await store.copy_session("src", "new", branch_id="zz")
        with pytest.raises(BranchNotFound):
            await store.copy_session("nothing", "new", branch_id=MAIN)
        with pytest.raises(InvalidBranchOperation):
            await store.copy_session("src", "new", branch_id="c", to_sequence=5)
        with pytest.raises(ValueError, match="branch_id"):
            await store.copy_session("src", "new", to_sequence=2)
        with pytest.raises(ValueError):
            await store.copy_session("src", "new", branch_id="c", to_sequence=-1)
        with pytest.raises(InvalidIdentifier):
            await store.copy_session("src", "bad id")
        with pytest.raises(InvalidIdentifier):
            await store.copy_session("bad/id", "new")
        with pytest.raises(InvalidIdentifier):
            await store.copy_session("src", "new", branch_id="")
        assert await store.list_branches("new") == []
        assert "new" not in await store.list_sessions()


# -- argument checks and payloads -------------------------------------------------


async def test_bad_arguments(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        await store.append(ev("s", 1))
        with pytest.raises(InvalidIdentifier):
            await store.get_event("bad id", "x")
        with pytest.raises(TypeError):
            await store.get_event("s", 5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await store.get_event("s", "")
        with pytest.raises(ValueError):
            await store.get_event("s", "x" * 129)
        with pytest.raises(InvalidIdentifier):
            await store.get_by_key("", "k")
        with pytest.raises(TypeError):
            await store.get_by_key("s", None)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await store.get_by_key("s", "")
        with pytest.raises(ValueError):
            await store.get_by_key("s", "a\x00b")
        with pytest.raises(InvalidIdentifier):
            await store.read_last("s", "bad branch")
        with pytest.raises(ValueError):
            await store.read_last("s", limit=-1)
        with pytest.raises(ValueError):
            await store.read_last("s", limit=None)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await store.read_last("s", to_sequence=-1)
        with pytest.raises(TypeError):
            await store.read_last("s", kinds="message")
        with pytest.raises(TypeError):
            await store.read_last("s", kinds=[1])  # type: ignore[list-item]
        with pytest.raises(InvalidIdentifier):
            await store.read_at("s", "..", [1])
        with pytest.raises(TypeError):
            await store.read_at("s", MAIN, 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await store.read_at("s", MAIN, [1, -1])
        with pytest.raises(ValueError):
            await store.read_at("s", MAIN, [1, "2"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("data", "metadata", "where"),
    [
        (b"\x00\x01", {}, "data is bytes"),
        ({"blob": b"x"}, {}, "data['blob'] is bytes"),
        ({"a": [1, bytearray(b"x")]}, {}, "data['a'][1] is bytes"),
        ({}, {"key": "k", "raw": b"x"}, "metadata['raw'] is bytes"),
    ],
)
async def test_bytes_in_a_payload_say_base64(
    store_factory: StoreFactory, data: Any, metadata: dict[str, Any], where: str
) -> None:
    record = EventRecord("s", MAIN, 1, "k", data, metadata)
    async with store_factory() as store:
        with pytest.raises(InvalidEvent, match="base64") as caught:
            await store.append(record)
        assert where in str(caught.value)
        with pytest.raises(InvalidEvent, match="base64"):
            await store.append_next([record])
        assert await store.read("s") == []
    with pytest.raises(InvalidEvent, match="base64"):
        EventRecord.new("s", MAIN, 1, "k", data, metadata=metadata)


# -- the journal's mirrors --------------------------------------------------------


async def test_journal_mirrors_the_primitives(store_factory: StoreFactory) -> None:
    async with EventJournal(store_factory()) as journal:
        first = await journal.append(ev("s", 1, key="k1"))
        await journal.append(ev("s", 2, "tool"))
        assert await journal.get_event("s", first.event_id) == first
        assert await journal.get_by_key("s", "k1") == first
        assert seqs(await journal.read_last("s", kinds=["message"])) == [1]
        assert seqs(await journal.read_at("s", MAIN, [2, 3, 1])) == [2, None, 1]
        infos = await journal.copy_session("s", "t")
        assert [(i.branch_id, i.head) for i in infos] == [(MAIN, 2)]
        assert seqs(await journal.read("t")) == [1, 2]
        assert journal.get_event.__doc__ == EventStore.get_event.__doc__
