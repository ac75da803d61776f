"""Property-based testing of an agent loop with ``eventstore.testing``.

The toy agent below answers user turns. For each turn it records the user's
message, then one ``tool_call`` per planned tool use and the tool's
``tool_result``, then its answer. Tools fail sometimes; on a failure the agent
records the error as the result, forks a ``retry-N`` branch, calls the tool
again there and merges the retry back into ``main`` (copy-on-write branches:
nothing is copied until the merge appends the retry's own events).

The property, over every branch's logical history: **every tool call gets
exactly one result event**, after it, and no result lacks its call. Hypothesis
generates the conversations (tool names and JSON arguments come from the kit's
``json_values()`` and ``identifiers()`` strategies, failures are drawn too) and
checks the property on a :class:`~eventstore.MemoryEventStore`. A second agent
with a classic bug (it forgets to record a result when the tool raises) shows
what a failure looks like: Hypothesis shrinks it to the smallest conversation
that breaks the property.

Finally the store itself is checked with the kit's state machine, the same way
you would check your own backend.

Run: ``python examples/property_harness.py`` (exits 0; about ten seconds).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from eventstore import MAIN, EventRecord, EventStore, MemoryEventStore
from eventstore.testing import identifiers, json_values, store_state_machine


class ToolFailed(Exception):
    """A tool raised; the agent must still answer the call."""


@dataclass(frozen=True)
class ToolUse:
    """One planned call: which tool, its arguments, and whether its first try fails."""

    tool: str
    args: Any
    fails_first: bool


@dataclass(frozen=True)
class Turn:
    text: str
    plan: list[ToolUse]


class Agent:
    """Records each step of each turn as one event of ``session_id``."""

    def __init__(self, store: EventStore, session_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.calls = 0

    async def emit(self, kind: str, data: Any, branch: str = MAIN) -> EventRecord:
        head = await self.store.head(self.session_id, branch)
        record = EventRecord.new(self.session_id, branch, head + 1, kind, data)
        return await self.store.append(record)

    async def run_tool(self, use: ToolUse, attempt: int) -> Any:
        if use.fails_first and attempt == 1:
            raise ToolFailed(f"{use.tool} timed out")
        return {"tool": use.tool, "echo": use.args}

    async def call(self, use: ToolUse, branch: str = MAIN, attempt: int = 1) -> bool:
        self.calls += 1
        call_id = f"call-{self.calls}"
        await self.emit("tool_call", {"id": call_id, "tool": use.tool, "args": use.args}, branch)
        try:
            result = await self.run_tool(use, attempt)
        except ToolFailed as exc:
            await self.emit("tool_result", {"id": call_id, "error": str(exc)}, branch)
            return False
        await self.emit("tool_result", {"id": call_id, "ok": result}, branch)
        return True

    async def handle(self, turn: Turn) -> None:
        await self.emit("message", {"role": "user", "text": turn.text})
        for use in turn.plan:
            if not await self.call(use):
                await self.retry(use)
        await self.emit("message", {"role": "assistant", "text": f"done with {turn.text!r}"})

    async def retry(self, use: ToolUse) -> None:
        # Fork at the head: the failed call already has its result, so the
        # retry branch starts with no call pending.
        branch = f"retry-{self.calls}"
        await self.store.create_branch(self.session_id, branch)
        await self.call(use, branch, attempt=2)
        await self.store.merge_branch(self.session_id, branch, MAIN)


class ForgetfulAgent(Agent):
    """The bug: a tool that raises leaves its call without a result."""

    async def call(self, use: ToolUse, branch: str = MAIN, attempt: int = 1) -> bool:
        self.calls += 1
        call_id = f"call-{self.calls}"
        await self.emit("tool_call", {"id": call_id, "tool": use.tool, "args": use.args}, branch)
        try:
            result = await self.run_tool(use, attempt)
        except ToolFailed:
            return False
        await self.emit("tool_result", {"id": call_id, "ok": result}, branch)
        return True


def broken_pairs(history: list[EventRecord]) -> list[str]:
    """Call ids whose calls do not have exactly one result after them."""
    calls: Counter[str] = Counter()
    results: Counter[str] = Counter()
    problems = []
    for record in history:
        if record.kind == "tool_call":
            calls[record.data["id"]] += 1
        elif record.kind == "tool_result":
            call_id = record.data["id"]
            if calls[call_id] == 0:
                problems.append(f"{call_id}: result before any call")
            results[call_id] += 1
    problems += [f"{i}: {results[i]} results" for i in calls if (calls[i], results[i]) != (1, 1)]
    return problems


async def converse(agent_type: type[Agent], session_id: str, turns: list[Turn]) -> list[str]:
    async with MemoryEventStore() as store:
        agent = agent_type(store, session_id)
        for turn in turns:
            await agent.handle(turn)
        problems = []
        for info in await store.list_branches(session_id):
            history = await store.read(session_id, info.branch_id)
            problems += [f"{info.branch_id}/{p}" for p in broken_pairs(history)]
        return problems


tool_uses = st.builds(
    ToolUse,
    tool=identifiers(max_size=12),
    args=json_values(max_leaves=5),
    fails_first=st.booleans(),
)
turns = st.lists(
    st.builds(Turn, text=st.text(max_size=20), plan=st.lists(tool_uses, max_size=3)),
    min_size=1,
    max_size=4,
)
quick = settings(max_examples=100, deadline=None, database=None)


def check(agent_type: type[Agent]) -> None:
    @quick
    @given(session_id=identifiers(max_size=24), conversation=turns)
    def every_call_gets_one_result(session_id: str, conversation: list[Turn]) -> None:
        problems = asyncio.run(converse(agent_type, session_id, conversation))
        assert not problems, problems

    every_call_gets_one_result()


def main() -> None:
    check(Agent)
    print("Agent: every tool call got exactly one result, over 100 generated conversations")

    try:
        check(ForgetfulAgent)
    except AssertionError as exc:
        print(f"ForgetfulAgent: Hypothesis found the bug: {exc}")
        # Hypothesis attaches the shrunk, minimal failing input as a note.
        for note in getattr(exc, "__notes__", []):
            print("   ", note)
    else:
        raise SystemExit("the property missed ForgetfulAgent's bug")

    machine = store_state_machine(MemoryEventStore)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print("MemoryEventStore: the kit's state machine agreed with its reference model")


if __name__ == "__main__":
    main()
