"""Deterministic replay: served results, the first divergence, the fork it continues on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventstore import BranchExists, InvalidEvent
from journal import (
    AgentRun,
    Divergence,
    EventJournal,
    ReplayDiverged,
    ReplayStep,
    record_run,
    replay,
)
from journal.testing import assert_replays
from tests.conftest import StoreFactory

SESSION = "run-1"


class Tools:
    """Fake tools and model that count every call that really went out."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def weather(self, city: str) -> dict[str, Any]:
        self.calls.append(("weather", city))
        return {"city": city, "celsius": len(city) * 3}

    def model(self, prompt: str) -> str:  # a sync callable is fine too
        self.calls.append(("model", prompt))
        return f"answer to {prompt}"


async def agent(run: AgentRun, tools: Tools, cities: list[str]) -> str:
    """Asks the model for a plan, looks up each city, then answers. 1 + 3n + 1 steps."""
    await run.record("message", {"role": "user", "text": "weather?"})
    plan = await run.call("model_output", {"prompt": "plan"}, lambda: tools.model("plan"))
    for city in cities:
        await run.record("tool_call", {"tool": "weather", "city": city})
        await run.call(
            "tool_result", {"tool": "weather", "city": city}, lambda c=city: tools.weather(c)
        )
    await run.record("message", {"role": "assistant", "text": plan})
    return str(plan)


@pytest.fixture
async def journal(store_factory: StoreFactory) -> AsyncIterator[EventJournal]:
    async with EventJournal(store_factory()) as opened:
        tools = Tools()
        async with record_run(opened, SESSION) as run:
            await agent(run, tools, ["Oslo", "Rome", "Lima"])
        assert run.executed == 4 and len(tools.calls) == 4
        yield opened


async def test_recording_stores_each_step_with_its_call_key(journal: EventJournal) -> None:
    history = await journal.read(SESSION)
    assert [r.kind for r in history] == ["message", "model_output"] + [
        "tool_call",
        "tool_result",
    ] * 3 + ["message"]
    assert history[2 + 1].data == {"city": "Oslo", "celsius": 12}
    assert history[3].metadata == {"call_key": {"tool": "weather", "city": "Oslo"}}


async def test_an_unchanged_agent_executes_zero_tools(journal: EventJournal) -> None:
    tools = Tools()
    async with replay(journal, SESSION) as run:
        answer = await agent(run, tools, ["Oslo", "Rome", "Lima"])
    assert tools.calls == []
    assert (run.divergence, run.served, run.executed) == (None, 4, 0)
    assert answer == "answer to plan"
    assert await journal.head(SESSION) == 9
    assert [b.branch_id for b in await journal.list_branches(SESSION)] == ["main"]


async def test_a_changed_agent_diverges_at_the_right_sequence_and_forks(
    journal: EventJournal,
) -> None:
    original = await journal.read(SESSION)
    tools = Tools()
    async with replay(journal, SESSION, fork_on_divergence="paris") as run:
        await agent(run, tools, ["Oslo", "Paris", "Lima"])
    # 1 user message, 2 model output, 3-4 Oslo, 5 the call for Rome: now Paris.
    assert run.divergence == Divergence(
        5, original[4], ReplayStep("record", "tool_call", {"tool": "weather", "city": "Paris"})
    )
    assert tools.calls == [("weather", "Paris"), ("weather", "Lima")]
    assert (run.served, run.executed, run.branch_id) == (2, 2, "paris")
    assert await journal.read(SESSION) == original
    info = await journal.branch_info(SESSION, "paris")
    assert (info.parent_branch, info.fork_sequence, info.head) == ("main", 4, 9)
    diff = await journal.diff(SESSION, "main", "paris")
    assert diff.common_sequence == 4
    assert diff.only_a == original[4:]
    assert [r.data for r in diff.only_b][:2] == [
        {"tool": "weather", "city": "Paris"},
        {"city": "Paris", "celsius": 15},
    ]
    # The fork is itself a recording: replaying the new agent on it runs nothing.
    again = Tools()
    async with replay(journal, SESSION, branch_id="paris") as run:
        await agent(run, again, ["Oslo", "Paris", "Lima"])
    assert (again.calls, run.divergence) == ([], None)


async def test_a_served_call_with_another_key_is_not_served(journal: EventJournal) -> None:
    tools = Tools()

    async def other_prompt(run: AgentRun) -> None:
        await run.record("message", {"role": "user", "text": "weather?"})
        await run.call("model_output", {"prompt": "other"}, lambda: tools.model("other"))

    async with replay(journal, SESSION) as run:
        await other_prompt(run)
    assert run.divergence is not None and run.divergence.sequence == 2
    assert run.divergence.actual == ReplayStep("call", "model_output", None, {"prompt": "other"})
    # No fork asked for: the agent went on live, and nothing was stored.
    assert tools.calls == [("model", "other")]
    assert not run.storing
    assert await journal.head(SESSION) == 9


async def test_kinds_not_served_run_live_and_are_compared(journal: EventJournal) -> None:
    tools = Tools()
    async with replay(journal, SESSION, serve={"tool_result"}) as run:
        await agent(run, tools, ["Oslo", "Rome", "Lima"])
    assert tools.calls == [("model", "plan")]
    assert (run.divergence, run.served, run.executed) == (None, 3, 1)

    def new_model(prompt: str) -> str:
        return "a new plan"

    tools.model = new_model  # type: ignore[method-assign]
    async with replay(journal, SESSION, serve={"tool_result"}, fork_on_divergence="m2") as run:
        await agent(run, tools, ["Oslo", "Rome", "Lima"])
    assert run.divergence is not None
    assert run.divergence.sequence == 2
    assert run.divergence.actual.data == "a new plan"
    fork = await journal.read(SESSION, "m2", 2)
    assert fork[0].data == "a new plan" and fork[-1].data["text"] == "a new plan"


async def test_an_agent_that_stops_early_diverges_at_the_end(journal: EventJournal) -> None:
    tools = Tools()
    async with replay(journal, SESSION, fork_on_divergence="short") as run:
        await run.record("message", {"role": "user", "text": "weather?"})
    assert run.divergence is not None
    assert (run.divergence.sequence, run.divergence.actual) == (2, ReplayStep("end"))
    assert (await journal.branch_info(SESSION, "short")).head == 1
    assert tools.calls == []


async def test_an_agent_that_goes_on_diverges_after_the_recording(journal: EventJournal) -> None:
    tools = Tools()
    async with replay(journal, SESSION, fork_on_divergence="more") as run:
        await agent(run, tools, ["Oslo", "Rome", "Lima"])
        await run.record("message", {"role": "user", "text": "thanks"})
    assert run.divergence == Divergence(
        10, None, ReplayStep("record", "message", {"role": "user", "text": "thanks"})
    )
    assert (await journal.read(SESSION, "more", 10))[0].data["text"] == "thanks"


async def test_stop_on_divergence_raises_before_calling_out(journal: EventJournal) -> None:
    tools = Tools()
    with pytest.raises(ReplayDiverged) as caught:
        await assert_replays(journal, SESSION, lambda run: agent(run, tools, ["Oslo"]))
    assert isinstance(caught.value, AssertionError)
    assert caught.value.divergence.sequence == 5
    assert caught.value.divergence.actual.action == "record"
    assert "run-1/main#5" in str(caught.value)
    assert tools.calls == []
    done = await assert_replays(
        journal, SESSION, lambda run: agent(run, tools, ["Oslo", "Rome", "Lima"])
    )
    assert (done.served, tools.calls) == (4, [])


async def test_skipped_kinds_are_passed_over(journal: EventJournal) -> None:
    await journal.record(SESSION, "note", {"by": "a reviewer"})
    tools = Tools()
    async with replay(journal, SESSION, skip={"note"}) as run:
        await agent(run, tools, ["Oslo", "Rome", "Lima"])
    assert (run.divergence, tools.calls) == (None, [])


async def test_a_fork_name_taken_fails_at_the_divergence(journal: EventJournal) -> None:
    await journal.create_branch(SESSION, "taken")
    with pytest.raises(BranchExists):
        async with replay(journal, SESSION, fork_on_divergence="taken") as run:
            await agent(run, Tools(), ["Paris"])


async def test_results_are_plain_json_live_and_replayed(journal: EventJournal) -> None:
    async with record_run(journal, "json") as run:
        live = await run.call("tool_result", ("a", 1), lambda: (1, 2))
        with pytest.raises(InvalidEvent):
            await run.call("tool_result", "bad", lambda: object())
    async with replay(journal, "json") as again:
        served = await again.call("tool_result", ["a", 1], lambda: (3, 4))
    assert live == served == [1, 2]
    assert again.divergence is None


async def test_an_exception_from_fn_stores_nothing(journal: EventJournal) -> None:
    def broken() -> None:
        raise TimeoutError("tool timed out")

    async with record_run(journal, "errors") as run:
        with pytest.raises(TimeoutError):
            await run.call("tool_result", "t", broken)
        await run.record("message", "gave up")
    assert [r.kind for r in await journal.read("errors")] == ["message"]


async def test_a_run_must_be_entered(journal: EventJournal) -> None:
    run = replay(journal, SESSION)
    with pytest.raises(RuntimeError, match="async with"):
        await run.record("message")
