"""LangGraph's own checkpointer conformance suite, every capability, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, Capability

from journal import EventJournal
from journal.integrations.langgraph import JournalCheckpointSaver
from tests.conftest import StoreFactory


@pytest.mark.parametrize("capability", sorted(c.value for c in ALL_CAPABILITIES))
async def test_conformance(store_factory: StoreFactory, capability: str) -> None:
    journal = await EventJournal(store_factory()).open()

    async def saver() -> AsyncIterator[JournalCheckpointSaver]:
        yield JournalCheckpointSaver(journal)

    registered = checkpointer_test(name=f"JournalCheckpointSaver-{capability}")(saver)
    try:
        report = await validate(registered, capabilities={capability})
    finally:
        await journal.close()
    result = report.results[capability]
    assert result.detected, f"{capability} is not implemented"
    assert result.passed, "\n".join(result.failures)
    assert result.tests_failed == 0 and result.tests_passed > 0


def test_every_capability_is_covered() -> None:
    assert {c.value for c in Capability} == {c.value for c in ALL_CAPABILITIES}
