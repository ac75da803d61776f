"""Fold a recorded agent session step by step: the state at every tool call.

A debugger's first question about a bad run is "what did the agent know when it
made that call?". This script folds the session's events into an ``AgentState``
one event at a time and prints the state just before each tool call. Then it
jumps straight to one step with ``journal.fold(..., to_sequence=n)``, the way
you would bisect a long run, and checks both roads lead to the same state.

Events are typed: one tagged ``msgspec.Struct`` per kind, listed in an
``EventTypes`` registry that turns them into ``(kind, data)`` for the journal
and decodes stored records back into them.

Run:
    python examples/fold_steps.py                         # records a demo session first
    python examples/fold_steps.py ROOT SESSION [BRANCH]   # folds yours, read-only

The same session from the shell: ``eventstore --root ROOT show SESSION``.
To re-run an agent against a recording, see ``examples/replay_debug.py``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from eventstore import EventRecord
from journal import EventJournal, EventTypes, open_journal


class Message(msgspec.Struct, tag="message", frozen=True):
    role: str
    text: str


class ToolCall(msgspec.Struct, tag="tool_call", frozen=True):
    tool: str
    args: dict[str, Any] = {}


class ToolResult(msgspec.Struct, tag="tool_result", frozen=True):
    tool: str
    result: Any = None
    error: str | None = None


TYPES = EventTypes(Message, ToolCall, ToolResult)


@dataclass(frozen=True)
class AgentState:
    """What the agent knew after a step: immutable, so every step can be kept."""

    step: int = 0
    transcript: tuple[str, ...] = ()
    results: tuple[tuple[str, Any], ...] = ()
    errors: tuple[str, ...] = ()
    calls: int = 0


def reduce(state: AgentState, record: EventRecord) -> AgentState:
    """Apply one stored event; kinds this state does not track only advance the step."""
    state = replace(state, step=record.sequence)
    if record.kind not in TYPES:
        return state
    match TYPES.decode(record):
        case Message(role=role, text=text):
            return replace(state, transcript=(*state.transcript, f"{role}: {text}"))
        case ToolCall():
            return replace(state, calls=state.calls + 1)
        case ToolResult(tool=tool, error=str(error)):
            return replace(state, errors=(*state.errors, f"{tool}: {error}"))
        case ToolResult(tool=tool, result=result):
            return replace(state, results=(*state.results, (tool, result)))
    return state


DEMO_SESSION = "bad-invoice"
DEMO: list[msgspec.Struct] = [
    Message("user", "What do I owe for 3 licences at 120 EUR plus 25% VAT?"),
    ToolCall("lookup_price", {"item": "licence"}),
    ToolResult("lookup_price", {"unit": 120, "currency": "EUR"}),
    ToolCall("calculator", {"expression": "3 * 120 * 25"}),
    ToolResult("calculator", 9000),
    ToolCall("send_invoice", {"amount": 9000}),
    ToolResult("send_invoice", error="amount above the approval limit"),
    Message("assistant", "You owe 9000 EUR."),
]


async def record_demo(journal: EventJournal) -> None:
    """Record the demo run: the calculator call multiplies by 25 instead of 1.25."""
    for event in DEMO:
        await journal.record_typed(DEMO_SESSION, event)


def show_state(state: AgentState) -> None:
    print(f"       transcript: {list(state.transcript)}")
    print(f"       results:    {dict(state.results)}")
    if state.errors:
        print(f"       errors:     {list(state.errors)}")


async def replay(journal: EventJournal, session: str, branch: str) -> int:
    """Print the state before each tool call; return the number of calls seen."""
    state = AgentState()
    before_calls: list[tuple[int, AgentState]] = []
    async for record in journal.iter_events(session, branch):
        if record.kind == "tool_call":
            call = journal.decode(record)
            assert isinstance(call, ToolCall)
            print(f"#{record.sequence:<4} {call.tool}({call.args}) — the agent knew:")
            show_state(state)
            before_calls.append((record.sequence - 1, state))
        state = reduce(state, record)
    print(f"final state after step {state.step}: {state.calls} tool calls")
    show_state(state)
    if before_calls:
        # Jump to one step directly, as you would when bisecting a long run.
        step, seen = before_calls[-1]
        jumped = await journal.fold(
            session, reduce, AgentState(), branch_id=branch, to_sequence=step
        )
        assert jumped == seen, (jumped, seen)
        print(f"fold(to_sequence={step}) gives the same state as the step-by-step replay")
    return len(before_calls)


async def main(argv: list[str]) -> int:
    if not argv:
        with tempfile.TemporaryDirectory() as root:
            async with open_journal(root, types=TYPES, durability="write") as journal:
                await record_demo(journal)
                calls = await replay(journal, DEMO_SESSION, "main")
        assert calls == 3
        return 0
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    root, session, branch = argv[0], argv[1], argv[2] if len(argv) == 3 else "main"
    # Read-only: replaying never blocks (or is blocked by) the agent still writing.
    async with open_journal(root, types=TYPES, read_only=True) as journal:
        if session not in await journal.list_sessions():
            print(f"no session {session!r} in {root}", file=sys.stderr)
            return 2
        await replay(journal, session, branch)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
