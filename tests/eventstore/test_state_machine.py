"""The store state machine: passes the memory store, catches broken ones.

Each broken store below is ``MemoryEventStore`` with one deliberate bug on one
path; the machine must find it, and the failure must name that path.
"""

from __future__ import annotations

import io
import re
import unittest
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from eventstore import EventRecord, MemoryEventStore, MergeResult, SequenceConflict
from eventstore.testing import store_state_machine

#: The CI budget for the reference backend: many examples, short programs.
CI_SETTINGS = settings(
    max_examples=500,
    stateful_step_count=30,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)

MemoryMachine = store_state_machine(MemoryEventStore)
MemoryMachine.TestCase.settings = CI_SETTINGS  # type: ignore[attr-defined]
#: Collected by pytest as a unittest case; ``python -m unittest`` runs it too.
TestMemoryStoreMachine = MemoryMachine.TestCase


# -- deliberately broken stores ----------------------------------------------------


class DropsOneInRead(MemoryEventStore):
    async def _read(self, *args: Any) -> list[EventRecord]:
        records = await super()._read(*args)
        return records[:1] + records[2:]


class ReordersInIterEvents(MemoryEventStore):
    async def _iter_events(self, *args: Any) -> AsyncIterator[EventRecord]:
        records = [r async for r in super()._iter_events(*args)]
        if len(records) >= 2:
            records[0], records[1] = records[1], records[0]
        for record in records:
            yield record


class WrongHead(MemoryEventStore):
    async def _head(self, session_id: str, branch_id: str) -> int:
        head = await super()._head(session_id, branch_id)
        return head + 1 if head >= 3 else head


class ForgetsInheritedEvents(MemoryEventStore):
    async def _read(
        self, session_id: str, branch_id: str, start: int, end: int | None, limit: int | None
    ) -> list[EventRecord]:
        records = await super()._read(session_id, branch_id, start, end, limit)
        return [r for r in records if r.branch_id == branch_id]


class MergeDropsLast(MemoryEventStore):
    async def _merge_branch(self, session_id: str, source: str, target: str) -> MergeResult:
        branch = self._branch(session_id, source)
        if branch is not None and len(branch.events) >= 2:
            branch.events.pop()
        return await super()._merge_branch(session_id, source, target)


class RetryReturnsTheCopy(MemoryEventStore):
    async def _append_batch(self, events: list[EventRecord]) -> list[EventRecord]:
        retry = self._replay(events) is not None
        stored = await super()._append_batch(events)
        return list(events) if retry else stored


class AcceptsStaleAppends(MemoryEventStore):
    async def _append_batch(self, events: list[EventRecord]) -> list[EventRecord]:
        try:
            return await super()._append_batch(events)
        except SequenceConflict:
            return list(events)


class UnsortedSessions(MemoryEventStore):
    async def _list_sessions(self) -> list[str]:
        return sorted(await super()._list_sessions(), reverse=True)


def _failures(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _failures(inner)]
    return [exc]


@pytest.mark.parametrize(
    ("store", "symptom"),
    [
        (DropsOneInRead, "store returned|SequenceConflict"),
        (ReordersInIterEvents, "iter_events"),
        (WrongHead, "head"),
        (ForgetsInheritedEvents, "store returned"),
        (MergeDropsLast, "merged_events|SequenceConflict|store returned|head of"),
        (RetryReturnsTheCopy, "retry"),
        (AcceptsStaleAppends, "was accepted"),
        (UnsortedSessions, "s1"),
    ],
    ids=lambda p: p.__name__ if isinstance(p, type) else None,
)
def test_machine_finds_the_bug(store: type[MemoryEventStore], symptom: str) -> None:
    machine = store_state_machine(store)
    hunt = settings(
        max_examples=300,
        stateful_step_count=30,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    # Any failure will do (a broken retry may surface as a store error); the
    # symptom check below makes sure it is the injected bug that was found.
    with pytest.raises(Exception) as caught:
        run_state_machine_as_test(machine, settings=hunt)
    messages = [f"{type(e).__name__}: {e}" for e in _failures(caught.value)]
    assert any(re.search(symptom, m) for m in messages), messages


def test_machine_runs_under_unittest() -> None:
    machine = store_state_machine(MemoryEventStore)
    machine.TestCase.settings = settings(  # type: ignore[attr-defined]
        max_examples=10, stateful_step_count=10, deadline=None, database=None
    )
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(machine.TestCase)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    assert result.testsRun == 1
    assert result.wasSuccessful(), result.failures + result.errors


def test_crash_needs_reopen() -> None:
    async def crash(store: MemoryEventStore) -> None:
        await store.close()

    with pytest.raises(ValueError, match="crash needs reopen"):
        store_state_machine(MemoryEventStore, crash=crash)
    with pytest.raises(ValueError, match="in_flight needs crash"):
        store_state_machine(MemoryEventStore, reopen=lambda old: old, in_flight=True)


def test_reopen_and_crash_rules_over_a_store_that_keeps_its_data() -> None:
    """``reopen`` hands the machine a new object over the same data; crashes keep it."""
    shared: dict[str, Any] = {}
    feed: list[Any] = []

    class Kept(MemoryEventStore):
        def __init__(self) -> None:
            super().__init__()
            self._data = shared
            self._feed = feed
            self._position = feed[-1].position if feed else 0

        async def _close(self) -> None:
            pass  # the data outlives the object, like a file or a database

    def fresh() -> Kept:
        shared.clear()
        feed.clear()
        return Kept()

    async def crash(store: Kept) -> None:
        await store.close()

    machine = store_state_machine(fresh, reopen=lambda old: Kept(), crash=crash, in_flight=True)
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=60, stateful_step_count=20, deadline=None, database=None),
    )
