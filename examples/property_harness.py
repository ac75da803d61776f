"""Property-based testing of an agent loop with the agent kit.

Hypothesis generates scenarios with :func:`eventstore.testing.transcripts`:
what the user says in each turn, which tools the model asks for, and what
each tool answers (a value, or an error). The toy agent below plays a
scenario through :func:`journal.record_run` on a fresh journal per example
(:func:`journal.testing.fresh_journal`), then three properties are checked:

- the kit's invariants (:func:`eventstore.testing.check_session`): contiguous
  sequences, every tool call answered exactly once, nothing after the end;
- the state the agent kept as it went equals the fold of what it stored
  (:func:`eventstore.testing.check_fold`);
- replaying the agent against its own recording runs no tool at all
  (:func:`journal.testing.assert_replays`).

``ForgetfulAgent`` has a classic bug: when a tool raises, the call is left
without a result. The same properties catch it, and Hypothesis shrinks the
scenario to the smallest one that shows it: one turn, one failing tool.

Run: ``python examples/property_harness.py`` (exits 0; a few seconds).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import given, settings

from eventstore import EventRecord
from eventstore.testing import check_fold, check_session, transcripts
from journal import AgentRun, record_run
from journal.testing import assert_replays, fresh_journal

SESSION = "scenario"


class ToolFailed(Exception):
    """A tool raised."""


class Tools:
    """Answers each call the way the scenario says; counts the calls that really ran."""

    def __init__(self, scenario: list[Any]) -> None:
        self.answers = {data["id"]: data for kind, data in scenario if kind == "tool_result"}
        self.ran = 0

    async def run(self, call_id: str) -> Any:
        self.ran += 1
        answer = self.answers[call_id]
        if "error" in answer:
            raise ToolFailed(answer["error"])
        return answer["ok"]


def reduce(state: Counter[str], record: EventRecord) -> Counter[str]:
    """The agent's state as a fold: how many events of each kind, and failures."""
    state = state + Counter({record.kind: 1})
    if record.kind == "tool_result" and "error" in record.data:
        state["failures"] += 1
    return state


class Agent:
    """Plays a scenario: records each message, calls each tool, records its answer."""

    def __init__(self, tools: Tools) -> None:
        self.tools = tools
        self.state: Counter[str] = Counter()  # kept incrementally, as a real agent would

    async def step(self, run: AgentRun, kind: str, data: Any) -> None:
        self.state = reduce(self.state, await run.record(kind, data))

    async def play(self, run: AgentRun, scenario: list[Any]) -> None:
        for kind, data in scenario:
            if kind == "tool_call":
                await self.step(run, kind, data)
                await self.use_tool(run, data)
            elif kind != "tool_result":
                await self.step(run, kind, data)

    async def use_tool(self, run: AgentRun, call: dict[str, Any]) -> None:
        async def answer() -> dict[str, Any]:
            try:
                return {"id": call["id"], "ok": await self.tools.run(call["id"])}
            except ToolFailed as exc:
                # A failure is a result too: the model sees it, and a replay serves it.
                return {"id": call["id"], "error": str(exc)}

        result = await run.call("tool_result", call, answer)
        self.state = reduce(self.state, EventRecord.new(SESSION, "main", 1, "tool_result", result))


class ForgetfulAgent(Agent):
    """The bug: the tool's exception escapes ``run.call``, so its call gets no result."""

    async def use_tool(self, run: AgentRun, call: dict[str, Any]) -> None:
        async def answer() -> dict[str, Any]:
            return {"id": call["id"], "ok": await self.tools.run(call["id"])}

        try:
            result = await run.call("tool_result", call, answer)
        except ToolFailed:
            return
        self.state = reduce(self.state, EventRecord.new(SESSION, "main", 1, "tool_result", result))


async def check_agent(agent_type: type[Agent], scenario: list[Any]) -> None:
    async with fresh_journal() as journal:
        agent = agent_type(Tools(scenario))
        async with record_run(journal, SESSION) as run:
            await agent.play(run, scenario)
        await check_session(journal, SESSION)
        check_fold(await journal.read(SESSION), reduce, Counter(), agent.state)

        again = agent_type(Tools(scenario))
        await assert_replays(journal, SESSION, lambda run: again.play(run, scenario))
        assert again.tools.ran == 0, f"the replay ran {again.tools.ran} tools"


def check(agent_type: type[Agent]) -> None:
    @settings(max_examples=100, deadline=None, database=None)
    @given(scenario=transcripts())
    def property_holds(scenario: list[Any]) -> None:
        asyncio.run(check_agent(agent_type, scenario))

    property_holds()


def main() -> None:
    check(Agent)
    print("Agent: invariants, fold and replay hold over 100 generated scenarios")

    try:
        check(ForgetfulAgent)
    except AssertionError as exc:
        print(f"ForgetfulAgent: caught: {exc}")
        # Hypothesis attaches the shrunk, minimal failing scenario as a note.
        for note in getattr(exc, "__notes__", []):
            print("   ", note)
    else:
        raise SystemExit("the properties missed ForgetfulAgent's bug")


if __name__ == "__main__":
    main()
