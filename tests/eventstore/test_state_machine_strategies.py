"""The kit's strategies keep their promises: valid means accepted, hostile means refused."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import (
    MAIN,
    EventRecord,
    InvalidIdentifier,
    MemoryEventStore,
    check_identifier,
    is_valid_identifier,
)
from eventstore.testing import (
    Append,
    Fork,
    Merge,
    Operation,
    apply_operations,
    event_ids,
    hostile_identifiers,
    identifiers,
    operations,
)


@given(identifiers())
def test_identifiers_are_valid(name: str) -> None:
    assert is_valid_identifier(name) and check_identifier(name) == name
    assert EventRecord.new(name, name, 1, "note").session_id == name


@given(identifiers(max_size=5))
def test_identifiers_respect_max_size(name: str) -> None:
    assert 1 <= len(name) <= 5


def test_identifiers_reject_an_impossible_size() -> None:
    with pytest.raises(ValueError, match="max_size"):
        identifiers(max_size=129)


@given(hostile_identifiers())
def test_hostile_identifiers_are_refused_before_io(name: str) -> None:
    assert not is_valid_identifier(name)
    with pytest.raises(InvalidIdentifier):
        EventRecord.new(name, MAIN, 1, "note")
    with pytest.raises(InvalidIdentifier):
        EventRecord.new("s1", name, 1, "note")


def test_hostile_identifiers_cover_the_classics() -> None:
    seen: set[str] = set()

    @settings(max_examples=400, database=None)
    @given(hostile_identifiers())
    def collect(name: str) -> None:
        seen.add(name)

    collect()
    assert any(".." in n for n in seen) and any("/" in n for n in seen)
    assert any("\x00" in n for n in seen) and any(len(n) > 128 for n in seen)
    assert any(n[:1] in (".", "-") for n in seen) and any(not n.isascii() for n in seen)


@given(event_ids())
def test_event_ids_look_like_ulids(event_id: str) -> None:
    assert len(event_id) == 26 and set(event_id) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert event_id <= "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"  # the largest 128-bit ULID


async def _replay(ops: list[Operation]) -> list[tuple[str, str, list[tuple[int, str, object]]]]:
    async with MemoryEventStore() as store:
        await apply_operations(store, ops)
        out = []
        for session in await store.list_sessions():
            for info in await store.list_branches(session):
                history = await store.read(session, info.branch_id)
                out.append(
                    (session, info.branch_id, [(r.sequence, r.kind, r.data) for r in history])
                )
        return out


@settings(max_examples=50)
@given(operations(max_size=20))
def test_operation_workloads_replay_identically(ops: list[Operation]) -> None:
    """Replaying a workload is deterministic up to ids and timestamps."""
    assert asyncio.run(_replay(ops)) == asyncio.run(_replay(ops))


def test_operations_report_errors_as_outcomes() -> None:
    async def run() -> list[object]:
        async with MemoryEventStore() as store:
            return list(
                await apply_operations(
                    store,
                    [
                        Append("s1", MAIN, "note", {"n": 1}),
                        Fork("s1", "alt", MAIN, 5),
                        Merge("s1", "nope", MAIN),
                    ],
                )
            )

    appended, fork, merge = asyncio.run(run())
    assert [r.sequence for r in appended] == [1]  # type: ignore[attr-defined]
    assert type(fork).__name__ == "InvalidBranchOperation"
    assert type(merge).__name__ == "BranchNotFound"


@given(st.lists(operations(max_size=3), max_size=2))
def test_operations_serialize_as_json(batches: list[list[Operation]]) -> None:
    import msgspec

    for ops in batches:
        encoded = msgspec.json.encode(ops)
        assert msgspec.json.decode(encoded, type=list[Operation]) == ops
