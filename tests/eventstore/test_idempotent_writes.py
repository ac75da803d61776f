"""One rule on every backend: a write carrying a stored event id is a retry.

Issue 11, D10 (the backends disagreed on event ids), D8 and D9 (bad input gave
untyped or backend-specific errors, or was stored by some backends only).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventstore import (
    MAIN,
    EventRecord,
    EventStore,
    InvalidBranchOperation,
    InvalidEvent,
    MemoryEventStore,
    SequenceConflict,
)
from eventstore._base import IDEMPOTENCY_WINDOW
from eventstore.file import FileEventStore

StoreFactory = Callable[[], EventStore]


def ev(seq: int, data: Any = None, *, branch: str = MAIN, kind: str = "message") -> EventRecord:
    return EventRecord.new("s1", branch, seq, kind, {"n": seq} if data is None else data)


def unpositioned(record: EventRecord) -> EventRecord:
    """The record as it was before a store gave it a feed position."""
    return msgspec.structs.replace(record, position=0)


def again(record: EventRecord, **changes: Any) -> EventRecord:
    """The same write as a retry builds it: new sequence or timestamp, same id."""
    fields = {f: getattr(record, f) for f in record.__struct_fields__}
    fields["recorded_at"] = record.recorded_at + timedelta(seconds=5)
    fields.update(changes)
    return EventRecord(**fields)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[EventStore]:
    async with store_factory() as opened:
        yield opened


# -- a stored id with the same content: the stored record, nothing written ----------


async def test_retry_at_the_new_head_returns_the_stored_record(store: EventStore) -> None:
    first = await store.append(ev(1))
    # journal.record after a lost reply: the head moved to 1, so it asks for #2.
    assert await store.append(again(first, sequence=2)) == first
    assert await store.head("s1") == 1
    assert await store.read("s1") == [first]


async def test_retry_after_later_writes_returns_the_stored_record(store: EventStore) -> None:
    written = await store.append_batch([ev(n) for n in (1, 2, 3)])
    for record in written:
        for sequence in (1, record.sequence, 4, 9):
            assert await store.append(again(record, sequence=sequence)) == record
    assert await store.head("s1") == 3
    assert await store.read("s1") == written


async def test_concurrent_retries_write_once(store: EventStore) -> None:
    record = ev(1)
    results: list[Any]
    results = await asyncio.gather(
        store.append(record),
        *(store.append(again(record, sequence=n)) for n in (1, 2, 3)),
        return_exceptions=True,
    )
    results = [r if isinstance(r, BaseException) else unpositioned(r) for r in results]
    if store.shared_writers:
        # Another connection's uncommitted insert is invisible (READ COMMITTED): a
        # retry racing the original may only learn that its sequence is not next.
        # It never writes a second copy, and a retry after the race finds the record.
        assert all(r == record or isinstance(r, SequenceConflict) for r in results), results
        assert record in results[:2]
        assert unpositioned(await store.append(again(record, sequence=2))) == record
    else:
        assert results == [record] * 4
    assert [unpositioned(r) for r in await store.read("s1")] == [record]


async def test_retry_on_a_merged_branch_returns_the_stored_record(store: EventStore) -> None:
    await store.append(ev(1))
    await store.create_branch("s1", "f")
    mine = await store.append(ev(2, branch="f"))
    await store.merge_branch("s1", "f", MAIN)
    # The branch is closed now, but the write was made: the retry learns so.
    assert await store.append(again(mine, sequence=3)) == mine
    assert await store.head("s1") == 2


async def test_json_equal_content_is_the_same_write(store: EventStore) -> None:
    first = await store.append(ev(1, {"a": 1, "b": [1.5, None]}))
    same = again(first, data={"b": [1.5, None], "a": 1}, sequence=2)
    assert await store.append(same) == first
    assert await store.head("s1") == 1


async def test_batch_retry_at_the_new_head_returns_the_stored_batch(store: EventStore) -> None:
    batch = await store.append_batch([ev(n) for n in (1, 2, 3)])
    retry = [again(record, sequence=record.sequence + 3) for record in batch]
    assert await store.append_batch(retry) == batch
    assert await store.head("s1") == 3


# -- a stored id with other content, or part of a batch: InvalidEvent ----------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"data": {"n": 99}}, id="data"),
        pytest.param({"data": {"n": 1.0}}, id="data-float-for-int"),
        pytest.param({"kind": "tool_call"}, id="kind"),
        pytest.param({"metadata": {"actor": "x"}}, id="metadata"),
    ],
)
@pytest.mark.parametrize("sequence", [1, 2], ids=["same-sequence", "next-sequence"])
async def test_stored_id_with_other_content_is_invalid(
    store: EventStore, change: dict[str, Any], sequence: int
) -> None:
    first = await store.append(ev(1))
    with pytest.raises(InvalidEvent, match=first.event_id):
        await store.append(again(first, sequence=sequence, **change))
    assert await store.read("s1") == [first]


async def test_stored_id_on_another_branch_is_invalid(store: EventStore) -> None:
    first = await store.append(ev(1))
    await store.create_branch("s1", "f")
    own = await store.append(ev(2, branch="f"))
    with pytest.raises(InvalidEvent):
        await store.append(again(first, branch_id="f", sequence=3))
    with pytest.raises(InvalidEvent):
        await store.append(again(own, branch_id=MAIN, sequence=2))
    assert await store.read("s1", "f") == [first, own]
    assert await store.read("s1") == [first]


async def test_batch_mixing_stored_and_new_ids_is_invalid(store: EventStore) -> None:
    first = await store.append(ev(1))
    for batch in ([again(first, sequence=2), ev(3)], [ev(2), again(first, sequence=3)]):
        with pytest.raises(InvalidEvent, match="in part"):
            await store.append_batch(batch)
    assert await store.read("s1") == [first]


async def test_the_same_id_may_live_in_two_sessions(store: EventStore) -> None:
    first = await store.append(ev(1))
    other = again(first, session_id="s2", sequence=1)
    stored = await store.append(other)
    assert unpositioned(stored) == unpositioned(other)
    assert await store.read("s2") == [stored]


async def test_new_ids_still_get_sequence_conflicts(store: EventStore) -> None:
    await store.append(ev(1))
    with pytest.raises(SequenceConflict, match="expected 2, got 1"):
        await store.append(ev(1))
    with pytest.raises(SequenceConflict, match="expected 2, got 5"):
        await store.append(ev(5))


# -- ids survive a reopen, within the window -----------------------------------------


async def test_retry_after_reopen_returns_the_stored_record(
    persistent_store_factory: StoreFactory,
) -> None:
    async with persistent_store_factory() as store:
        written = await store.append_batch([ev(n) for n in (1, 2, 3)])
        await store.create_branch("s1", "f", fork_sequence=1)
        own = await store.append(ev(2, branch="f"))
    async with persistent_store_factory() as store:
        assert await store.append(again(written[0], sequence=4)) == written[0]
        assert await store.append(again(own, sequence=3)) == own
        with pytest.raises(InvalidEvent):
            await store.append(again(written[1], sequence=4, data="other"))
        assert await store.head("s1") == 3
        assert await store.head("s1", "f") == 2


async def test_ids_of_the_last_window_of_records_are_recognised(
    store_factory: StoreFactory,
) -> None:
    total = IDEMPOTENCY_WINDOW + 500
    store = await store_factory().open()
    try:
        for start in range(1, total + 1, 2000):
            batch = [ev(n) for n in range(start, min(start + 2000, total + 1))]
            await store.append_batch(batch)
        oldest = (await store.read("s1", from_sequence=total - IDEMPOTENCY_WINDOW + 1))[0]
        newest = (await store.read("s1", from_sequence=total))[0]
        if not isinstance(store, MemoryEventStore):
            # A reopened file store reads its window from the files.
            await store.close()
            store = await store_factory().open()
        for record in (newest, oldest):
            assert await store.append(again(record, sequence=total + 1)) == record
            with pytest.raises(InvalidEvent):
                await store.append(again(record, sequence=total + 1, kind="other"))
        assert await store.head("s1") == total
    finally:
        await store.close()


# -- D8, D9: bad input is InvalidEvent (or ValueError) on every backend, before any I/O


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


BAD_FIELDS = [
    pytest.param({"kind": "a\x00b"}, id="nul-in-kind"),
    pytest.param({"kind": "a\ud800"}, id="surrogate-in-kind"),
    pytest.param({"event_id": "01J\x00X"}, id="nul-in-event-id"),
    pytest.param({"event_id": "01J\udfffX"}, id="surrogate-in-event-id"),
    pytest.param({"metadata": {"k\ud800": 1}}, id="surrogate-in-metadata-key"),
    pytest.param({"data": "x\udc00"}, id="surrogate-in-data"),
    pytest.param({"data": _nested(986)}, id="data-986-deep"),
    pytest.param({"data": _nested(256)}, id="data-256-deep"),
    pytest.param({"metadata": {"k": _nested(255)}}, id="metadata-256-deep"),
    pytest.param({"sequence": 2**63}, id="sequence-2**63"),
]


@pytest.mark.parametrize("bad", BAD_FIELDS)
@pytest.mark.parametrize("how", ["append", "append_batch"])
async def test_bad_events_are_invalid_and_write_nothing(
    store: EventStore, bad: dict[str, Any], how: str
) -> None:
    first = await store.append(ev(1))
    fields = {f: getattr(ev(2), f) for f in EventRecord.__struct_fields__}
    record = EventRecord(**{**fields, **bad})
    with pytest.raises(InvalidEvent):
        if how == "append":
            await store.append(record)
        else:
            await store.append_batch([record])
    assert await store.head("s1") == 1
    assert await store.read("s1") == [first]
    assert await store.list_sessions() == ["s1"]


async def test_deepest_allowed_payload_round_trips(store: EventStore) -> None:
    record = EventRecord.new(
        "s1", MAIN, 1, "deep", _nested(255), metadata={"k": _nested(254), "s": '[[[[\\"'}
    )
    stored = await store.append(record)
    assert unpositioned(stored) == record
    assert await store.read("s1") == [stored]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({"from_sequence": 2**63}, id="from"),
        pytest.param({"to_sequence": 2**63}, id="to"),
        pytest.param({"limit": 2**63}, id="limit"),
    ],
)
async def test_read_bounds_beyond_bigint_are_value_errors(
    store: EventStore, args: dict[str, int]
) -> None:
    await store.append(ev(1))
    with pytest.raises(ValueError, match="2\\*\\*63-1"):
        await store.read("s1", **args)
    with pytest.raises(ValueError, match="2\\*\\*63-1"):
        [r async for r in store.iter_events("s1", **args)]
    with pytest.raises(InvalidBranchOperation):
        await store.create_branch("s1", "f", fork_sequence=2**63)


async def test_largest_bounds_are_accepted(store: EventStore) -> None:
    first = await store.append(ev(1))
    top = 2**63 - 1
    assert await store.read("s1", to_sequence=top, limit=top) == [first]
    assert await store.read("s1", from_sequence=top) == []
    with pytest.raises(SequenceConflict, match=f"expected 2, got {top}"):
        await store.append(ev(top))


def test_deep_data_from_a_shallow_stack_is_invalid(tmp_path: Path) -> None:
    # The interpreter's recursion budget is per thread and counts the caller's
    # frames: from a fresh thread the old check accepted data up to ~983 deep,
    # and at ~985 the file store's encoder, a few frames further down, failed
    # with a bare RecursionError. Now one fixed bound holds whatever the stack.
    depths = [256, 300, 500, *range(900, 1001)]
    outcome: dict[int, str] = {}

    async def attempt() -> None:
        async with FileEventStore(tmp_path) as store:
            for depth in depths:
                try:
                    await store.append(EventRecord("s1", MAIN, 1, "deep", _nested(depth)))
                except BaseException as exc:
                    outcome[depth] = type(exc).__name__
                else:
                    outcome[depth] = "stored"
                    return
            outcome[0] = str(await store.head("s1"))

    thread = threading.Thread(target=asyncio.run, args=(attempt(),))
    thread.start()
    thread.join()
    assert outcome == {0: "0", **dict.fromkeys(depths, "InvalidEvent")}
