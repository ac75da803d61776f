"""The contract suite: one set of tests every :class:`~eventstore.EventStore` must pass.

Use it for your own backend::

    import pytest
    from eventstore.testing import EventStoreContract

    class TestMyStore(EventStoreContract):
        @pytest.fixture
        def store_factory(self, tmp_path):
            return lambda: MyStore(tmp_path)

``store_factory()`` returns a fresh, unopened store. For a persistent backend,
also subclass :class:`PersistentStoreContract` and provide a
``persistent_store_factory`` fixture: calling it again must give a store over
the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from .._base import EventStore
from .._consumers import DeadLetter
from .._errors import (
    BranchClosed,
    BranchExists,
    BranchNotFound,
    InvalidBranchOperation,
    InvalidEvent,
    InvalidIdentifier,
    SequenceConflict,
    StoreClosed,
)
from .._ids import MAIN
from .._records import EventRecord, utc_now
from .._ulid import new_ulid

__all__ = (
    "ConsumerStateContract",
    "EventStoreContract",
    "LifecycleContract",
    "PersistentLifecycleContract",
    "PersistentStoreContract",
)

StoreFactory = Callable[[], EventStore]


def ev(
    session: str, seq: int, kind: str = "message", data: Any = None, branch: str = MAIN
) -> EventRecord:
    """A record with a small agent-like payload."""
    payload = {"n": seq} if data is None else data
    return EventRecord.new(session, branch, seq, kind, payload)


async def fill(
    store: EventStore, session: str, count: int, branch: str = MAIN, start: int = 1
) -> list[EventRecord]:
    """Append ``count`` events in one batch starting at ``start``."""
    return await store.append_batch(
        [ev(session, n, branch=branch) for n in range(start, start + count)]
    )


def seqs(records: list[EventRecord]) -> list[int]:
    return [r.sequence for r in records]


class EventStoreContract:
    """The behaviour DESIGN.md promises, written once for every backend."""

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> AsyncIterator[EventStore]:
        async with store_factory() as opened:
            yield opened

    # -- the original design's four tests ---------------------------------------

    async def test_appends_and_reads_in_sequence(self, store: EventStore) -> None:
        for n in (1, 2, 3):
            await store.append(ev("s1", n))
        records = await store.read("s1")
        assert seqs(records) == [1, 2, 3]
        assert [r.data for r in records] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert await store.head("s1") == 3

    async def test_duplicate_sequence_rejected(self, store: EventStore) -> None:
        await store.append(ev("s1", 1))
        with pytest.raises(SequenceConflict, match="expected 2, got 1") as info:
            await store.append(ev("s1", 1))
        assert (info.value.expected, info.value.actual) == (2, 1)
        assert (info.value.session_id, info.value.branch_id) == ("s1", MAIN)

    async def test_gap_rejected(self, store: EventStore) -> None:
        await store.append(ev("s1", 1))
        with pytest.raises(SequenceConflict, match="expected 2, got 3"):
            await store.append(ev("s1", 3))
        assert await store.head("s1") == 1

    async def test_only_main_is_implicit(self, store: EventStore) -> None:
        await store.append(ev("s1", 1, branch="main"))
        await store.append(ev("s1", 2, branch="main"))
        # A typo never silently starts a new root branch.
        with pytest.raises(BranchNotFound):
            await store.append(ev("s1", 1, branch="feature-x"))
        with pytest.raises(BranchNotFound):
            await store.append_batch([ev("s1", 1, branch="feature-x")])
        await store.create_branch("s1", "feature-x", fork_sequence=0)
        await store.append(ev("s1", 1, branch="feature-x"))
        assert await store.head("s1", "main") == 2
        assert await store.head("s1", "feature-x") == 1
        assert [r.branch_id for r in await store.read("s1", "feature-x")] == ["feature-x"]
        info = await store.branch_info("s1", "feature-x")
        assert (info.parent_branch, info.fork_sequence, info.head) == ("main", 0, 1)

    # -- appends ----------------------------------------------------------------

    async def test_append_returns_the_stored_record(self, store: EventStore) -> None:
        record = ev("s1", 1, "tool_call", {"tool": "search", "args": [1, "x"]})
        stored = await store.append(record)
        assert stored.position >= 1
        assert stored == msgspec.structs.replace(record, position=stored.position)
        assert (await store.read("s1"))[0] == stored

    async def test_first_append_must_be_sequence_one(self, store: EventStore) -> None:
        with pytest.raises(SequenceConflict, match="expected 1, got 2"):
            await store.append(ev("s1", 2))
        assert await store.list_sessions() == []

    async def test_idempotent_retry_returns_stored_record(self, store: EventStore) -> None:
        first = await store.append(ev("s1", 1))
        await store.append(ev("s1", 2))
        again = await store.append(first)
        assert again == first
        assert seqs(await store.read("s1")) == [1, 2]

    async def test_same_sequence_other_event_id_conflicts(self, store: EventStore) -> None:
        await store.append(ev("s1", 1))
        with pytest.raises(SequenceConflict):
            await store.append(ev("s1", 1))

    async def test_batch_appends_all(self, store: EventStore) -> None:
        stored = await fill(store, "s1", 5)
        assert seqs(stored) == [1, 2, 3, 4, 5]
        assert seqs(await store.read("s1")) == [1, 2, 3, 4, 5]

    async def test_batch_is_all_or_nothing(self, store: EventStore) -> None:
        await fill(store, "s1", 2)
        with pytest.raises(SequenceConflict, match="expected 3, got 2"):
            await store.append_batch([ev("s1", 2), ev("s1", 3)])
        assert await store.head("s1") == 2

    async def test_batch_retry_is_idempotent(self, store: EventStore) -> None:
        batch = [ev("s1", 1), ev("s1", 2)]
        stored = await store.append_batch(batch)
        assert await store.append_batch(batch) == stored
        assert await store.head("s1") == 2

    @pytest.mark.parametrize(
        "bad",
        [
            [],
            "mixed-session",
            "gap",
            "duplicate-id",
        ],
    )
    async def test_bad_batches_rejected_before_io(self, store: EventStore, bad: Any) -> None:
        if bad == "mixed-session":
            bad = [ev("s1", 1), ev("s2", 2)]
        elif bad == "gap":
            bad = [ev("s1", 1), ev("s1", 3)]
        elif bad == "duplicate-id":
            one = ev("s1", 1)
            bad = [one, EventRecord("s1", MAIN, 2, "m", event_id=one.event_id)]
        with pytest.raises(InvalidEvent):
            await store.append_batch(bad)
        assert await store.head("s1") == 0
        assert await store.list_sessions() == []

    async def test_concurrent_appends_of_one_sequence_one_wins(self, store: EventStore) -> None:
        results = await asyncio.gather(
            *(store.append(ev("race", 1, data={"writer": i})) for i in range(20)),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, EventRecord)]
        conflicts = [r for r in results if isinstance(r, SequenceConflict)]
        assert len(winners) == 1 and len(conflicts) == 19
        assert await store.read("race") == winners

    # -- bad input ----------------------------------------------------------------

    @pytest.mark.parametrize(
        "session_id",
        [
            "",
            "../etc",
            "..",
            "a/b",
            "a\\b",
            ".hidden",
            "-x",
            "a..b",
            "x" * 129,
            "é",
            "a b",
            "a\x00b",
            "a\n",
        ],
    )
    async def test_invalid_identifiers_rejected(self, store: EventStore, session_id: str) -> None:
        record = EventRecord(session_id, MAIN, 1, "message")
        with pytest.raises(InvalidIdentifier):
            await store.append(record)
        with pytest.raises(InvalidIdentifier):
            await store.read(session_id)
        with pytest.raises(InvalidIdentifier):
            await store.head(session_id)
        with pytest.raises(InvalidIdentifier):
            await store.append(EventRecord("ok", session_id, 1, "message"))
        assert await store.list_sessions() == []

    @pytest.mark.parametrize(
        "record",
        [
            EventRecord("s1", MAIN, 1, ""),
            EventRecord("s1", MAIN, 0, "message"),
            EventRecord("s1", MAIN, -1, "message"),
            EventRecord("s1", MAIN, 1, "message", data=object()),
            EventRecord("s1", MAIN, 1, "message", data={"when": {1, 2}}),
            EventRecord("s1", MAIN, 1, "message", data=float("nan")),
            EventRecord("s1", MAIN, 1, "message", data={1: "int key"}),
            EventRecord("s1", MAIN, 1, "message", metadata={"x": object()}),
        ],
        ids=["empty-kind", "seq-0", "seq-neg", "object", "set", "nan", "int-key", "bad-meta"],
    )
    async def test_invalid_events_rejected_before_io(
        self, store: EventStore, record: EventRecord
    ) -> None:
        with pytest.raises(InvalidEvent):
            await store.append(record)
        assert await store.head("s1") == 0
        assert await store.list_sessions() == []

    async def test_invalid_event_via_new(self) -> None:
        with pytest.raises(InvalidEvent):
            EventRecord.new("s1", MAIN, 1, "message", {"x": object()})
        with pytest.raises(InvalidIdentifier):
            EventRecord.new("../x", MAIN, 1, "message")

    # -- reads --------------------------------------------------------------------

    async def test_unknown_session_reads_empty(self, store: EventStore) -> None:
        assert await store.read("nobody") == []
        assert await store.read("nobody", "feature") == []
        assert await store.head("nobody") == 0
        assert [r async for r in store.iter_events("nobody")] == []

    async def test_read_ranges(self, store: EventStore) -> None:
        await fill(store, "s1", 20)
        assert seqs(await store.read("s1", from_sequence=5, limit=3)) == [5, 6, 7]
        assert seqs(await store.read("s1", from_sequence=18)) == [18, 19, 20]
        assert seqs(await store.read("s1", from_sequence=3, to_sequence=6)) == [3, 4, 5, 6]
        assert seqs(await store.read("s1", from_sequence=3, limit=2, to_sequence=10)) == [3, 4]
        assert await store.read("s1", from_sequence=21) == []
        assert await store.read("s1", from_sequence=5, to_sequence=4) == []
        assert await store.read("s1", limit=0) == []
        assert seqs(await store.read("s1", from_sequence=0, limit=1)) == [1]

    async def test_read_rejects_negative_arguments(self, store: EventStore) -> None:
        with pytest.raises(ValueError):
            await store.read("s1", from_sequence=-1)
        with pytest.raises(ValueError):
            await store.read("s1", limit=-1)

    async def test_iter_events_streams_everything(self, store: EventStore) -> None:
        await fill(store, "s1", 2500)
        streamed = [r.sequence async for r in store.iter_events("s1")]
        assert streamed == list(range(1, 2501))
        window = [r.sequence async for r in store.iter_events("s1", "main", 1000, 1200)]
        assert window == list(range(1000, 2200))
        ranged = [
            r.sequence async for r in store.iter_events("s1", from_sequence=2400, to_sequence=2405)
        ]
        assert ranged == list(range(2400, 2406))

    async def test_list_sessions_sorted(self, store: EventStore) -> None:
        for name in ("charlie", "alpha", "bravo"):
            await store.append(ev(name, 1))
        assert await store.list_sessions() == ["alpha", "bravo", "charlie"]

    async def test_records_round_trip_exactly(self, store: EventStore) -> None:
        payload = {
            "text": 'héllo ✓ "quoted"\n',
            "n": 2**53,
            "f": 0.1,
            "t": True,
            "z": None,
            "l": [1, [2]],
        }
        record = EventRecord.new("s1", MAIN, 1, "message", payload, metadata={"actor": "agent-7"})
        await store.append(record)
        (back,) = await store.read("s1")
        assert back == msgspec.structs.replace(record, position=back.position)
        assert back.recorded_at == record.recorded_at
        assert back.recorded_at.tzinfo is not None

    # -- branches -----------------------------------------------------------------

    async def test_fork_reads_parent_history_then_its_own(self, store: EventStore) -> None:
        await fill(store, "s1", 10)
        info = await store.create_branch("s1", "alt", fork_sequence=4)
        assert (info.parent_branch, info.fork_sequence, info.head) == (MAIN, 4, 4)
        assert await store.head("s1", "alt") == 4
        await store.append(ev("s1", 5, branch="alt"))
        history = await store.read("s1", "alt")
        assert seqs(history) == [1, 2, 3, 4, 5]
        assert [r.branch_id for r in history] == [MAIN] * 4 + ["alt"]
        assert history[:4] == (await store.read("s1"))[:4]

    async def test_fork_defaults_to_head_and_at_zero(self, store: EventStore) -> None:
        await fill(store, "s1", 3)
        assert (await store.create_branch("s1", "at-head")).fork_sequence == 3
        zero = await store.create_branch("s1", "at-zero", fork_sequence=0)
        assert zero.head == 0
        assert await store.read("s1", "at-zero") == []
        await store.append(ev("s1", 1, branch="at-zero"))
        assert seqs(await store.read("s1", "at-zero")) == [1]

    async def test_next_append_on_fork_carries_fork_plus_one(self, store: EventStore) -> None:
        await fill(store, "s1", 6)
        await store.create_branch("s1", "alt", fork_sequence=2)
        with pytest.raises(SequenceConflict, match="expected 3, got 7"):
            await store.append(ev("s1", 7, branch="alt"))

    async def test_parent_appends_after_fork_stay_off_the_branch(self, store: EventStore) -> None:
        await fill(store, "s1", 3)
        await store.create_branch("s1", "alt")
        await store.append(ev("s1", 4))
        assert await store.head("s1", "alt") == 3
        assert seqs(await store.read("s1", "alt")) == [1, 2, 3]

    async def test_fork_of_fork_and_ranges_across_lineage(self, store: EventStore) -> None:
        await fill(store, "s1", 10)
        await store.create_branch("s1", "a", fork_sequence=5)
        await fill(store, "s1", 3, branch="a", start=6)
        await store.create_branch("s1", "b", from_branch="a", fork_sequence=7)
        await fill(store, "s1", 4, branch="b", start=8)
        history = await store.read("s1", "b")
        assert seqs(history) == list(range(1, 12))
        assert [r.branch_id for r in history] == [MAIN] * 5 + ["a"] * 2 + ["b"] * 4
        assert seqs(await store.read("s1", "b", 4, 5)) == [4, 5, 6, 7, 8]
        assert seqs(await store.read("s1", "b", 5, to_sequence=6)) == [5, 6]
        streamed = [(r.branch_id, r.sequence) async for r in store.iter_events("s1", "b", 5, 3)]
        assert streamed == [(MAIN, 5), ("a", 6), ("a", 7)]

    async def test_branch_errors(self, store: EventStore) -> None:
        await fill(store, "s1", 3)
        await store.create_branch("s1", "alt")
        with pytest.raises(BranchExists):
            await store.create_branch("s1", "alt")
        with pytest.raises(BranchNotFound):
            await store.create_branch("s1", "x", from_branch="nope")
        with pytest.raises(BranchNotFound):
            await store.branch_info("s1", "nope")
        with pytest.raises(InvalidBranchOperation):
            await store.create_branch("s1", "far", fork_sequence=4)
        with pytest.raises(InvalidIdentifier):
            await store.create_branch("s1", "../evil")
        assert [b.branch_id for b in await store.list_branches("s1")] == ["alt", MAIN]

    async def test_main_always_exists(self, store: EventStore) -> None:
        # ``main`` exists implicitly, so it can never be created as a fork.
        with pytest.raises(BranchExists):
            await store.create_branch("s1", MAIN)
        with pytest.raises(BranchNotFound):
            await store.append(ev("s1", 1, branch="root"))
        await store.create_branch("s1", "root")
        await store.append(ev("s1", 1, branch="root"))
        with pytest.raises(BranchExists):
            await store.create_branch("s1", MAIN, from_branch="root")
        main = await store.branch_info("s1", MAIN)
        assert (main.parent_branch, main.fork_sequence, main.head) == (None, 0, 0)
        assert await store.read("s1", MAIN) == []
        await store.append(ev("s1", 1))
        assert seqs(await store.read("s1", MAIN)) == [1]

    async def test_failed_branch_operations_leave_no_trace(self, store: EventStore) -> None:
        # Bad input loses nothing and adds nothing: no session appears.
        with pytest.raises(InvalidBranchOperation):
            await store.create_branch("s1", "alt", fork_sequence=3)
        with pytest.raises(BranchNotFound):
            await store.merge_branch("s2", MAIN, "nope")
        with pytest.raises(BranchNotFound):
            await store.merge_branch("s3", "nope", MAIN)
        assert await store.list_sessions() == []
        assert await store.list_branches("s1") == []

    async def test_list_branches_and_info(self, store: EventStore) -> None:
        await fill(store, "s1", 4)
        await store.create_branch("s1", "b2", fork_sequence=1)
        await store.create_branch("s1", "b1", fork_sequence=2)
        infos = await store.list_branches("s1")
        assert [i.branch_id for i in infos] == ["b1", "b2", MAIN]
        main = await store.branch_info("s1", MAIN)
        assert (main.parent_branch, main.fork_sequence, main.head, main.merged_into) == (
            None,
            0,
            4,
            None,
        )
        assert main.created_at.tzinfo is not None
        assert await store.list_branches("unknown") == []

    async def test_merge_appends_own_events_and_closes_source(self, store: EventStore) -> None:
        await fill(store, "s1", 4)
        await store.create_branch("s1", "alt", fork_sequence=2)
        originals = await fill(store, "s1", 3, branch="alt", start=3)
        result = await store.merge_branch("s1", "alt", MAIN)
        assert (result.source_branch, result.target_branch) == ("alt", MAIN)
        assert (result.merged_events, result.target_head) == (3, 7)
        merged = await store.read("s1", from_sequence=5)
        assert seqs(merged) == [5, 6, 7]
        for new, old in zip(merged, originals, strict=True):
            assert new.branch_id == MAIN and new.kind == old.kind and new.data == old.data
            assert new.metadata["merged_from"] == {
                "branch_id": "alt",
                "sequence": old.sequence,
                "event_id": old.event_id,
            }
            assert new.event_id != old.event_id
        assert (await store.branch_info("s1", "alt")).merged_into == MAIN
        with pytest.raises(BranchClosed):
            await store.append(ev("s1", 6, branch="alt"))
        with pytest.raises(BranchClosed):
            await store.create_branch("s1", "again", from_branch="alt")
        with pytest.raises(BranchClosed):
            await store.merge_branch("s1", "alt", MAIN)
        assert seqs(await store.read("s1", "alt")) == [1, 2, 3, 4, 5]

    async def test_merge_errors(self, store: EventStore) -> None:
        await fill(store, "s1", 2)
        await store.create_branch("s1", "child")
        await store.create_branch("s1", "grandchild", from_branch="child")
        with pytest.raises(InvalidBranchOperation):
            await store.merge_branch("s1", "child", "child")
        with pytest.raises(InvalidBranchOperation):
            await store.merge_branch("s1", "child", "grandchild")
        with pytest.raises(BranchNotFound):
            await store.merge_branch("s1", "nope", MAIN)
        with pytest.raises(BranchNotFound):
            await store.merge_branch("s1", "child", "nope")
        assert (await store.branch_info("s1", "child")).merged_into is None

    async def test_merge_of_empty_branch(self, store: EventStore) -> None:
        await fill(store, "s1", 2)
        await store.create_branch("s1", "idle")
        result = await store.merge_branch("s1", "idle", MAIN)
        assert (result.merged_events, result.target_head) == (0, 2)
        assert (await store.branch_info("s1", "idle")).merged_into == MAIN

    # -- lifecycle ----------------------------------------------------------------

    async def test_use_after_close_raises(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        async with store:
            await store.append(ev("s1", 1))
        with pytest.raises(StoreClosed):
            await store.append(ev("s1", 2))
        with pytest.raises(StoreClosed):
            await store.read("s1")
        await store.close()

    # -- immutable history ----------------------------------------------------------

    async def test_history_is_immutable(self, store: EventStore) -> None:
        # Nothing a caller or reader holds may alias what the store keeps.
        def payload() -> dict[str, Any]:
            return {"a": [1], "nested": {"k": "v"}, "n": 1}

        def meta() -> dict[str, Any]:
            return {"actor": "me", "tags": ["x"]}

        def vandalise(record: EventRecord) -> None:
            record.data["a"].append("changed")
            record.data["nested"]["k"] = "changed"
            record.data["added"] = True
            record.metadata["tags"].append("changed")
            record.metadata["added"] = True

        single = EventRecord.new("s1", MAIN, 1, "message", payload(), metadata=meta())
        batch = [
            EventRecord.new("s1", MAIN, n, "message", payload(), metadata=meta()) for n in (2, 3)
        ]
        returned = [await store.append(single), *await store.append_batch(batch)]
        for record in [single, *batch, *returned]:
            vandalise(record)
        vandalise((await store.read("s1"))[0])
        async for record in store.iter_events("s1"):
            vandalise(record)
        await store.create_branch("s1", "alt", fork_sequence=1)
        await store.append(EventRecord.new("s1", "alt", 2, "message", payload(), metadata=meta()))
        await store.merge_branch("s1", "alt", MAIN)
        for record in await store.read("s1", "alt"):
            vandalise(record)
        history = await store.read("s1")
        assert [r.data for r in history] == [payload()] * 4
        assert [r.metadata for r in history[:3]] == [meta()] * 3
        assert history[3].metadata["tags"] == ["x"] and "added" not in history[3].metadata


class PersistentStoreContract:
    """For backends whose data outlives the store object: reopen and carry on."""

    async def test_reopen_restores_heads_history_and_branches(
        self, persistent_store_factory: StoreFactory
    ) -> None:
        store_factory = persistent_store_factory
        async with store_factory() as store:
            written = await fill(store, "s1", 5)
            await store.create_branch("s1", "alt", fork_sequence=3)
            await store.append(ev("s1", 4, branch="alt"))
            await store.create_branch("s1", "done", fork_sequence=1)
            await store.append(ev("s1", 2, branch="done"))
            await store.merge_branch("s1", "done", MAIN)
        async with store_factory() as store:
            assert await store.head("s1") == 6
            assert (await store.read("s1"))[:5] == written
            assert seqs(await store.read("s1", "alt")) == [1, 2, 3, 4]
            assert (await store.branch_info("s1", "alt")).fork_sequence == 3
            assert (await store.branch_info("s1", "done")).merged_into == MAIN
            await store.append(ev("s1", 7))
            await store.append(ev("s1", 5, branch="alt"))
            assert await store.head("s1") == 7
            assert await store.list_sessions() == ["s1"]


class LifecycleContract:
    """Closing, deleting, listing and expiring sessions and branches (issue 14).

    :meth:`residue` says where a store still holds some bytes; it knows a file
    store's root. Override it to search your backend's storage too (the erasure
    checks are skipped where it returns ``None``).
    """

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> AsyncIterator[EventStore]:
        async with store_factory() as opened:
            yield opened

    async def residue(self, store: EventStore, marker: bytes) -> list[str] | None:
        """Every place in the store's storage that still holds ``marker``.

        ``None`` if this cannot search the store's storage (memory).
        """
        root = getattr(store, "root", None)
        if not isinstance(root, str):
            return None
        return await asyncio.to_thread(_grep_tree, root, marker)

    # -- close_branch ----------------------------------------------------------------

    async def test_closed_branch_refuses_appends_and_forks(self, store: EventStore) -> None:
        written = await fill(store, "s1", 2)
        info = await store.close_branch("s1")
        assert (info.closed, info.head, info.merged_into) == (True, 2, None)
        with pytest.raises(BranchClosed) as caught:
            await store.append(ev("s1", 3))
        assert (caught.value.session_id, caught.value.branch_id) == ("s1", MAIN)
        assert caught.value.merged_into is None
        with pytest.raises(BranchClosed):
            await store.append_batch([ev("s1", 3), ev("s1", 4)])
        with pytest.raises(BranchClosed):
            await store.create_branch("s1", "alt")
        # Its history stays readable, and a retry of a stored write still answers.
        assert await store.read("s1") == written
        assert await store.append(written[1]) == written[1]
        assert await store.head("s1") == 2
        assert (await store.branch_info("s1")).closed

    async def test_close_is_idempotent_and_merge_closes_too(self, store: EventStore) -> None:
        await fill(store, "s1", 2)
        await store.create_branch("s1", "alt")
        await store.append(ev("s1", 3, branch="alt"))
        first = await store.close_branch("s1", "alt")
        assert await store.close_branch("s1", "alt") == first
        with pytest.raises(BranchClosed):
            await store.merge_branch("s1", "alt", MAIN)
        await store.create_branch("s1", "side")
        await store.merge_branch("s1", "side", MAIN)
        side = await store.branch_info("s1", "side")
        assert (side.closed, side.merged_into) == (True, MAIN)
        assert (await store.close_branch("s1", "side")).merged_into == MAIN
        assert {b.branch_id: b.closed for b in await store.list_branches("s1")} == {
            MAIN: False,
            "alt": True,
            "side": True,
        }

    async def test_close_unknown_branch_or_session(self, store: EventStore) -> None:
        with pytest.raises(BranchNotFound):
            await store.close_branch("s1", "nope")
        with pytest.raises(InvalidIdentifier):
            await store.close_branch("../evil")
        assert await store.list_sessions() == []
        # main always exists: closing it says a run ended before its first event.
        info = await store.close_branch("s1")
        assert (info.closed, info.head) == (True, 0)
        assert await store.list_sessions() == ["s1"]
        with pytest.raises(BranchClosed):
            await store.append(ev("s1", 1))

    # -- delete_session ----------------------------------------------------------------

    async def test_delete_session_erases_everything(self, store: EventStore) -> None:
        marker = f"secret-{new_ulid()}"
        await store.append_batch([ev("s1", n, data={"secret": marker, "n": n}) for n in (1, 2)])
        await store.create_branch("s1", "alt", fork_sequence=1)
        await store.append(ev("s1", 2, branch="alt", data={"secret": marker}))
        await store.create_branch("s1", "side")
        await store.append(ev("s1", 3, branch="side", data=[marker]))
        await store.merge_branch("s1", "side", MAIN)
        await store.close_branch("s1", "alt")
        kept = await fill(store, "s2", 2)
        found = await self.residue(store, marker.encode())
        assert found is None or found, "the erasure check cannot find the marker"
        assert await store.delete_session("s1") is True
        assert await self.residue(store, marker.encode()) in (None, [])
        assert await store.read("s1") == []
        assert await store.read("s1", "alt") == []
        assert await store.head("s1") == 0
        assert await store.list_branches("s1") == []
        with pytest.raises(BranchNotFound):
            await store.branch_info("s1", "alt")
        assert await store.list_sessions() == ["s2"]
        assert [i.session_id for i in await store.sessions()] == ["s2"]
        assert await store.read("s2") == kept
        assert await store.delete_session("s1") is False

    async def test_deleted_id_is_reused_from_sequence_one(self, store: EventStore) -> None:
        old = await fill(store, "s1", 3)
        await store.create_branch("s1", "alt")
        await store.close_branch("s1")
        assert await store.delete_session("s1")
        with pytest.raises(SequenceConflict):
            await store.append(ev("s1", 4))
        # The old event ids are forgotten with the session: these are new writes.
        again = await store.append_batch([old[0], ev("s1", 2)])
        assert await store.read("s1") == again
        assert [b.branch_id for b in await store.list_branches("s1")] == [MAIN]
        assert not (await store.branch_info("s1")).closed
        info = await store.create_branch("s1", "alt")
        assert (info.fork_sequence, info.head) == (2, 2)

    async def test_delete_unknown_session_is_a_no_op(self, store: EventStore) -> None:
        await fill(store, "s1", 1)
        assert await store.delete_session("nope") is False
        with pytest.raises(InvalidIdentifier):
            await store.delete_session("../s1")
        assert await store.list_sessions() == ["s1"]

    # -- delete_branch -----------------------------------------------------------------

    async def test_delete_branch(self, store: EventStore) -> None:
        marker = f"branch-secret-{new_ulid()}"
        trunk = await fill(store, "s1", 2)
        await store.create_branch("s1", "alt", fork_sequence=1)
        await store.append(ev("s1", 2, branch="alt", data={"secret": marker}))
        await store.create_branch("s1", "leaf", from_branch="alt")
        with pytest.raises(InvalidBranchOperation):
            await store.delete_branch("s1", "alt")  # "leaf" forks from it
        with pytest.raises(InvalidBranchOperation):
            await store.delete_branch("s1", MAIN)
        with pytest.raises(BranchNotFound):
            await store.delete_branch("s1", "nope")
        with pytest.raises(BranchNotFound):
            await store.delete_branch("unknown", "alt")
        await store.delete_branch("s1", "leaf")
        await store.delete_branch("s1", "alt")
        assert await self.residue(store, marker.encode()) in (None, [])
        assert [b.branch_id for b in await store.list_branches("s1")] == [MAIN]
        with pytest.raises(BranchNotFound):
            await store.branch_info("s1", "alt")
        with pytest.raises(BranchNotFound):
            await store.append(ev("s1", 3, branch="alt"))
        assert await store.read("s1") == trunk
        # The name is free again, for a branch with nothing of the old one.
        info = await store.create_branch("s1", "alt")
        assert (info.fork_sequence, info.head, info.closed) == (2, 2, False)
        assert await store.read("s1", "alt") == trunk

    async def test_delete_merge_target_leaves_sources_closed(self, store: EventStore) -> None:
        await fill(store, "s1", 1)
        await store.create_branch("s1", "target")
        await store.create_branch("s1", "source", fork_sequence=0)
        await store.append(ev("s1", 1, branch="source"))
        await store.merge_branch("s1", "source", "target")
        await store.delete_branch("s1", "target")
        info = await store.branch_info("s1", "source")
        assert (info.closed, info.merged_into) == (True, None)
        with pytest.raises(BranchClosed):
            await store.append(ev("s1", 2, branch="source"))

    # -- sessions and expire -------------------------------------------------------------

    async def test_sessions_lists_size_and_activity(self, store: EventStore) -> None:
        before = utc_now()
        await fill(store, "a1", 3)
        await store.create_branch("a1", "alt", fork_sequence=1)
        await store.append(ev("a1", 2, branch="alt"))
        await fill(store, "a2", 1)
        await store.close_branch("b1")
        infos = {i.session_id: i for i in await store.sessions()}
        assert list(infos) == ["a1", "a2", "b1"]
        assert (infos["a1"].branches, infos["a1"].events) == (2, 4)
        assert (infos["a2"].branches, infos["a2"].events) == (1, 1)
        assert (infos["b1"].branches, infos["b1"].events) == (1, 0)
        for info in infos.values():
            assert before <= info.created_at <= info.last_activity <= utc_now()
        last = await store.read("a1", "alt", 2)
        assert infos["a1"].last_activity >= last[0].recorded_at
        assert [i.session_id for i in await store.sessions(prefix="a")] == ["a1", "a2"]
        assert [i.session_id for i in await store.sessions(prefix="zz")] == []
        assert [i.session_id for i in await store.sessions(limit=2)] == ["a1", "a2"]
        assert [i.session_id for i in await store.sessions(after="a2")] == ["b1"]
        assert [i.session_id for i in await store.sessions(after="a1", limit=1)] == ["a2"]
        assert await store.sessions(limit=0) == []

    async def test_sessions_by_activity(self, store: EventStore) -> None:
        await fill(store, "old", 1)
        await store.close_branch("closed-early")
        mark = _after_now()
        await fill(store, "new", 1)
        await store.close_branch("closed-early")  # already closed: no new activity
        assert [i.session_id for i in await store.sessions(active_before=mark)] == [
            "closed-early",
            "old",
        ]
        assert [i.session_id for i in await store.sessions(active_after=mark)] == ["new"]
        # Closing a branch is activity too.
        await store.create_branch("old", "alt")
        await store.close_branch("old", "alt")
        assert [i.session_id for i in await store.sessions(active_after=mark)] == ["new", "old"]

    async def test_sessions_rejects_bad_arguments(self, store: EventStore) -> None:
        with pytest.raises(ValueError, match="timezone"):
            await store.sessions(active_after=datetime(2024, 1, 1))
        with pytest.raises(ValueError):
            await store.sessions(limit=-1)
        with pytest.raises(InvalidIdentifier):
            await store.sessions(after="../x")
        with pytest.raises(TypeError):
            await store.sessions(prefix=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await store.expire(idle_for=30)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await store.expire(idle_for=timedelta(seconds=-1))

    async def test_expire_deletes_idle_sessions(self, store: EventStore) -> None:
        for session in ("s1", "s2", "s3"):
            await fill(store, session, 2)
        assert await store.expire(idle_for=timedelta(days=1)) == []
        _after_now()
        assert await store.expire(idle_for=timedelta(0)) == ["s1", "s2", "s3"]
        assert await store.list_sessions() == []
        assert await store.sessions() == []

    async def test_only_main_is_implicit_on_batches(self, store: EventStore) -> None:
        with pytest.raises(BranchNotFound):
            await store.append_batch([ev("s1", 1, branch="retyr"), ev("s1", 2, branch="retyr")])
        with pytest.raises(BranchNotFound):
            await store.append(ev("s1", 5, branch="retyr"))
        assert await store.list_sessions() == []


class PersistentLifecycleContract:
    """Closes and deletes outlive the store object."""

    async def test_close_and_delete_survive_a_reopen(
        self, persistent_store_factory: StoreFactory
    ) -> None:
        async with persistent_store_factory() as store:
            await fill(store, "s1", 2)
            await store.create_branch("s1", "alt")
            await store.create_branch("s1", "gone")
            await store.append(ev("s1", 3, branch="gone"))
            await store.close_branch("s1", "alt")
            await store.delete_branch("s1", "gone")
            await fill(store, "s2", 2)
            assert await store.delete_session("s2")
        async with persistent_store_factory() as store:
            assert (await store.branch_info("s1", "alt")).closed
            with pytest.raises(BranchClosed):
                await store.append(ev("s1", 3, branch="alt"))
            assert [b.branch_id for b in await store.list_branches("s1")] == ["alt", MAIN]
            assert await store.list_sessions() == ["s1"]
            assert await store.read("s2") == []
            assert await store.append(ev("s2", 1))
            info = {i.session_id: i for i in await store.sessions()}
            assert (info["s1"].branches, info["s1"].events) == (2, 2)
            assert (info["s2"].branches, info["s2"].events) == (1, 1)


def _after_now() -> datetime:
    """The current time, once the clock has moved past everything before the call."""
    mark = utc_now()
    while utc_now() <= mark:
        pass
    return utc_now()


def _grep_tree(root: str, marker: bytes) -> list[str]:
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError), open(path, "rb") as file:
                if marker in file.read():
                    found.append(path)
    return found


class FeedContract:
    """The global feed (issue 13): positions, ``read_feed``, ``feed_head``,
    ``append_next`` and commit listeners, the same on every backend."""

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> AsyncIterator[EventStore]:
        async with store_factory() as opened:
            yield opened

    # -- positions ------------------------------------------------------------------

    async def test_every_returned_record_has_a_position(self, store: EventStore) -> None:
        one = await store.append(ev("s1", 1))
        batch = await fill(store, "s1", 2, start=2)
        nxt = await store.append_next([ev("s2", 99), ev("s2", 99)])
        written = [one, *batch, *nxt]
        positions = [r.position for r in written]
        assert all(p >= 1 for p in positions), positions
        assert positions == sorted(set(positions)), "positions must increase in write order"
        assert await store.read("s1") == [one, *batch]
        assert [r async for r in store.iter_events("s1")] == [one, *batch]
        assert await store.read("s2") == nxt
        assert await store.read_feed() == written

    async def test_fork_keeps_inherited_positions_and_merge_copies_get_new_ones(
        self, store: EventStore
    ) -> None:
        base = await fill(store, "s1", 3)
        await store.create_branch("s1", "alt", fork_sequence=2)
        (own,) = await store.append_next([ev("s1", 1, branch="alt")])
        assert await store.read("s1", "alt") == [*base[:2], own]
        await store.append(ev("s1", 4))
        top = await store.feed_head()
        await store.merge_branch("s1", "alt", MAIN)
        merged = (await store.read("s1"))[4:]
        assert len(merged) == 1 and merged[0].position > top > own.position
        assert (await store.read("s1", "alt"))[-1] == own
        feed = await store.read_feed()
        assert [r.position for r in feed] == sorted({r.position for r in feed})
        assert [r.event_id for r in feed][-1] == merged[0].event_id
        assert len(feed) == 6  # inherited records appear once, under their writer

    # -- read_feed and feed_head -------------------------------------------------------

    async def test_feed_of_an_empty_store(self, store: EventStore) -> None:
        assert await store.read_feed() == []
        assert await store.feed_head() == 0
        assert await store.read_feed(after=10**9) == []

    async def test_read_feed_after_and_limit(self, store: EventStore) -> None:
        written = [*await fill(store, "s1", 3), *await fill(store, "s2", 3)]
        written.append(await store.append(ev("s1", 4)))
        assert await store.feed_head() == written[-1].position
        assert await store.read_feed() == written
        for cut in range(len(written) + 1):
            after = 0 if cut == 0 else written[cut - 1].position
            assert await store.read_feed(after) == written[cut:]
            assert await store.read_feed(after, 2) == written[cut : cut + 2]
        assert await store.read_feed(0, 0) == []
        assert await store.read_feed(written[-1].position) == []

    async def test_read_feed_filters(self, store: EventStore) -> None:
        await store.append_batch(
            [ev("s1", 1, "message"), ev("s1", 2, "tool_call"), ev("s1", 3, "message")]
        )
        await store.append_batch([ev("s2", 1, "tool_call"), ev("s2", 2, "message")])
        await store.append(ev("s3", 1, "message"))
        feed = await store.read_feed()

        def where(kinds: set[str] | None, sessions: set[str] | None) -> list[EventRecord]:
            return [
                r
                for r in feed
                if (kinds is None or r.kind in kinds)
                and (sessions is None or r.session_id in sessions)
            ]

        assert await store.read_feed(kinds=["tool_call"]) == where({"tool_call"}, None)
        assert await store.read_feed(session_ids=("s2", "s3")) == where(None, {"s2", "s3"})
        both = await store.read_feed(kinds={"message"}, session_ids=["s1", "s2"])
        assert both == where({"message"}, {"s1", "s2"})
        assert await store.read_feed(kinds={"message"}, limit=2) == where({"message"}, None)[:2]
        after = feed[1].position
        assert await store.read_feed(after, kinds=["message"]) == [
            r for r in where({"message"}, None) if r.position > after
        ]
        assert await store.read_feed(kinds=[]) == []
        assert await store.read_feed(session_ids=[]) == []
        assert await store.read_feed(kinds=["nothing-like-it"]) == []
        assert await store.read_feed(session_ids=["unknown"]) == []

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            ({"after": -1}, ValueError),
            ({"after": "3"}, ValueError),
            ({"after": 1.0}, ValueError),
            ({"after": True}, ValueError),
            ({"limit": -1}, ValueError),
            ({"limit": 2.5}, ValueError),
            ({"kinds": "message"}, TypeError),
            ({"kinds": [1]}, TypeError),
            ({"kinds": 7}, TypeError),
            ({"session_ids": "s1"}, TypeError),
            ({"session_ids": [None]}, TypeError),
            ({"session_ids": ["../etc"]}, InvalidIdentifier),
        ],
    )
    async def test_bad_feed_arguments_fail_before_any_io(
        self, store_factory: StoreFactory, args: dict[str, Any], error: type[Exception]
    ) -> None:
        store = store_factory()
        await store.close()  # a closed store would raise StoreClosed on any I/O
        with pytest.raises(error):
            await store.read_feed(**args)

    # -- append_next --------------------------------------------------------------------

    async def test_append_next_numbers_from_the_head(self, store: EventStore) -> None:
        (first,) = await store.append_next([ev("s1", 42)])
        assert first.sequence == 1
        more = await store.append_next([ev("s1", 7), ev("s1", 7), ev("s1", 1)])
        assert seqs(more) == [2, 3, 4]
        assert await store.read("s1") == [first, *more]
        await store.create_branch("s1", "alt", fork_sequence=2)
        (forked,) = await store.append_next([ev("s1", 1, branch="alt")])
        assert (forked.branch_id, forked.sequence) == ("alt", 3)

    async def test_append_next_is_idempotent_with_event_ids(self, store: EventStore) -> None:
        batch = [ev("s1", 1), ev("s1", 2)]
        stored = await store.append_next(batch)
        await store.append(ev("s1", 3))
        head = await store.feed_head()
        assert await store.append_next(batch) == stored
        assert await store.append_next([batch[1]]) == stored[1:]
        assert (await store.head("s1"), await store.feed_head()) == (3, head)
        with pytest.raises(InvalidEvent, match="in part"):
            await store.append_next([batch[0], ev("s1", 9)])
        changed = EventRecord.new("s1", MAIN, 1, "other", None, event_id=batch[0].event_id)
        with pytest.raises(InvalidEvent, match="other content"):
            await store.append_next([changed])
        assert await store.head("s1") == 3

    async def test_append_next_refuses_what_append_batch_refuses(self, store: EventStore) -> None:
        with pytest.raises(InvalidEvent):
            await store.append_next([])
        with pytest.raises(InvalidEvent):
            await store.append_next([ev("s1", 1), ev("s2", 1)])
        with pytest.raises(InvalidEvent):
            await store.append_next([ev("s1", 1), ev("s1", 1, branch="b")])
        twin = ev("s1", 1)
        with pytest.raises(InvalidEvent):
            await store.append_next([twin, twin])
        with pytest.raises(InvalidEvent):
            await store.append_next(["not a record"])  # type: ignore[list-item]
        with pytest.raises(InvalidIdentifier):
            await store.append_next([EventRecord("bad/id", MAIN, 1, "k")])
        await store.create_branch("s1", "done")
        await store.merge_branch("s1", "done", MAIN)
        with pytest.raises(BranchClosed):
            await store.append_next([ev("s1", 1, branch="done")])
        assert await store.read_feed() == []

    async def test_concurrent_append_next_never_conflicts(self, store: EventStore) -> None:
        async def write(n: int) -> list[EventRecord]:
            batch = [ev("s1", 1, data={"task": n})]
            if n % 3 == 0:
                batch.append(ev("s1", 1, data={"task": n, "second": True}))
            return await store.append_next(batch)

        results = await asyncio.gather(*(write(n) for n in range(100)))
        for batch in results:
            assert seqs(batch) == list(range(batch[0].sequence, batch[0].sequence + len(batch)))
        total = sum(len(batch) for batch in results)
        history = await store.read("s1")
        assert seqs(history) == list(range(1, total + 1))
        assert sorted((r for batch in results for r in batch), key=lambda r: r.sequence) == history
        positions = [r.position for r in history]
        assert positions == sorted(set(positions))

    # -- the no-skip guarantee ----------------------------------------------------------

    async def test_a_concurrent_poller_never_skips(self, store: EventStore) -> None:
        writers_done = asyncio.Event()
        seen: dict[int, str] = {}

        async def writer(n: int) -> None:
            for round_ in range(15):
                session = f"w{n % 3}"
                if round_ % 4 == 0:
                    await store.append_next([ev(session, 1), ev(session, 1)])
                else:
                    await store.append_next([ev(session, 1, data={"w": n, "r": round_})])
                await asyncio.sleep(0)

        async def poller() -> None:
            last = 0
            while True:
                done = writers_done.is_set()
                for record in await store.read_feed(last, 7):
                    assert record.position > last, (record.position, last)
                    seen[record.position] = record.event_id
                    last = record.position
                if done and last == await store.feed_head():
                    return
                await asyncio.sleep(0)

        polling = asyncio.create_task(poller())
        await asyncio.gather(*(writer(n) for n in range(6)))
        writers_done.set()
        await asyncio.wait_for(polling, 30)
        feed = await store.read_feed()
        assert len(feed) == 6 * (15 + 4)
        missed = [r.position for r in feed if seen.get(r.position) != r.event_id]
        assert not missed, f"the poller skipped positions {missed}"

    # -- listeners ----------------------------------------------------------------------

    async def test_listeners_hear_every_commit_before_the_write_returns(
        self, store: EventStore
    ) -> None:
        heard: list[list[EventRecord]] = []

        class Listener:
            def committed(self, records: Any) -> None:
                heard.append(list(records))

        remove = store.add_listener(Listener())
        one = await store.append(ev("s1", 1))
        assert heard == [[one]]
        batch = await fill(store, "s1", 2, start=2)
        assert heard[-1] == batch
        nxt = await store.append_next([ev("s1", 1)])
        assert heard[-1] == nxt
        await store.append(one)  # a retry commits nothing
        assert len(heard) == 3
        await store.create_branch("s1", "alt")
        alt = await store.append_next([ev("s1", 1, branch="alt")])
        await store.merge_branch("s1", "alt", MAIN)
        assert heard[-2] == alt
        assert heard[-1] == (await store.read("s1"))[-1:]
        flat = [r.position for batch_ in heard for r in batch_]
        assert flat == sorted(set(flat))
        remove()
        remove()  # idempotent
        await store.append_next([ev("s1", 1)])
        assert len(heard) == 5


def _letter(name: str, position: int, attempts: int = 1, session: str = "s1") -> DeadLetter:
    now, event_id = utc_now(), new_ulid()
    where = (session, MAIN, position, event_id)
    return DeadLetter(name, position, *where, attempts, "E", "m", now, now)


class ConsumerStateContract:
    """Durable consumer state (issue 15): checkpoints, dead letters and leases,
    the same on every backend; for persistent ones they outlive the store object."""

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> AsyncIterator[EventStore]:
        async with store_factory() as opened:
            yield opened

    async def test_checkpoint_and_dead_letters(self, store: EventStore) -> None:
        assert await store.consumers() == []
        state = await store.consumer_state("idx")
        assert await state.position() == 0
        await state.save_position(7)
        await state.save_position(9)
        assert await state.position() == 9
        await state.add_dead_letter(_letter("idx", 3))
        await state.add_dead_letter(_letter("idx", 2))
        again = _letter("idx", 3, attempts=5)
        await state.add_dead_letter(again)  # the same position: replaced
        letters = await state.dead_letters()
        assert [(d.position, d.attempts) for d in letters] == [(2, 1), (3, 5)]
        assert letters[1] == again
        await state.remove_dead_letters({2, 99})
        assert await state.dead_letters() == [again]
        other = await store.consumer_state("other")
        assert await other.dead_letters() == []
        infos = await store.consumers()
        assert [(i.name, i.position, i.dead_letters) for i in infos if i.name == "idx"] == [
            ("idx", 9, 1)
        ]
        with pytest.raises(InvalidIdentifier):
            await store.consumer_state("no/slash")

    async def test_lease_is_exclusive_and_renewable(self, store: EventStore) -> None:
        state = await store.consumer_state("idx")
        assert await state.acquire("a", 30)
        assert await state.acquire("a", 30)  # renewed
        assert not await state.acquire("b", 30)
        (info,) = await store.consumers()
        assert info.holder == "a"
        await state.release("b")  # not the holder: nothing
        assert not await state.acquire("b", 30)
        await state.release("a")
        assert (await store.consumers())[0].holder is None
        assert await state.acquire("b", 30)
        await state.release("b")

    async def test_state_survives_a_reopen(self, persistent_store_factory: StoreFactory) -> None:
        store_factory = persistent_store_factory
        async with store_factory() as store:
            state = await store.consumer_state("idx")
            await state.save_position(5)
            await state.add_dead_letter(_letter("idx", 4))
            assert await state.acquire("gone", 30)
        # Closing the store (or its process ending) ends a lease of the file store;
        # on PostgreSQL the row keeps it until it lapses.
        async with store_factory() as store:
            state = await store.consumer_state("idx")
            assert await state.position() == 5
            assert [d.position for d in await state.dead_letters()] == [4]
            assert [i.name for i in await store.consumers()] == ["idx"]

    async def test_deleting_a_session_drops_its_dead_letters(self, store: EventStore) -> None:
        await fill(store, "s1", 1)
        await fill(store, "s2", 1)
        state = await store.consumer_state("idx")
        await state.add_dead_letter(_letter("idx", 1, session="s1"))
        await state.add_dead_letter(_letter("idx", 2, session="s2"))
        assert await store.delete_session("s1")
        assert [d.session_id for d in await state.dead_letters()] == ["s2"]
