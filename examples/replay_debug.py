"""Replay a recorded agent run: find where a fixed agent departs from it, fork, compare.

A bad run is recorded: the agent computed 25% VAT as ``* 25`` and tried to
send a 9000 EUR invoice. The fix (``* 1.25``) is checked against the recording
with :func:`journal.replay`:

1. the unchanged agent replays with every tool result served from the
   recording: no tool runs, nothing diverges;
2. the fixed agent replays until its first different step, the calculator
   call at step 4; the replay forks ``fixed`` just before it and the fixed
   agent carries on live there, recorded, while ``main`` stays as it was;
3. ``journal.diff`` shows both sides since the fork.

Run:
    python examples/replay_debug.py          # in a temporary directory
    python examples/replay_debug.py ROOT     # keeps the store in ROOT, then:
    eventstore --root ROOT diff invoice main fixed
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from typing import Any

from journal import AgentRun, EventJournal, open_journal, record_run, replay

SESSION = "invoice"
QUESTION = "What do I owe for 3 licences at 120 EUR plus 25% VAT?"


class Tools:
    """The outside world. Each call is counted: a replay must not make any it has a record of."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def lookup_price(self, item: str) -> dict[str, Any]:
        self.calls.append(f"lookup_price({item})")
        return {"unit": 120, "currency": "EUR"}

    async def calculator(self, expression: str) -> float:
        self.calls.append(f"calculator({expression})")
        total = 1.0
        for factor in expression.split("*"):
            total *= float(factor)
        return round(total, 2)

    async def send_invoice(self, amount: float) -> dict[str, Any]:
        self.calls.append(f"send_invoice({amount})")
        if amount > 1000:
            return {"error": "amount above the approval limit"}
        return {"invoice": "INV-7", "amount": amount}


async def use_tool(run: AgentRun, tools: Tools, name: str, **args: Any) -> Any:
    """A tool step: the call is the agent's decision, the result comes from outside."""
    await run.record("tool_call", {"tool": name, "args": args})
    key = {"tool": name, "args": args}
    return await run.call("tool_result", key, lambda: getattr(tools, name)(**args))


async def agent(run: AgentRun, tools: Tools, vat: str) -> str:
    await run.record("message", {"role": "user", "text": QUESTION})
    price = await use_tool(run, tools, "lookup_price", item="licence")
    total = await use_tool(run, tools, "calculator", expression=f"3 * {price['unit']} * {vat}")
    sent = await use_tool(run, tools, "send_invoice", amount=total)
    if "error" in sent:
        answer = f"I could not invoice {total} EUR: {sent['error']}."
    else:
        answer = f"You owe {total} EUR (invoice {sent['invoice']})."
    await run.record("message", {"role": "assistant", "text": answer})
    return answer


def buggy(run: AgentRun, tools: Tools) -> Any:
    return agent(run, tools, vat="25")


def fixed(run: AgentRun, tools: Tools) -> Any:
    return agent(run, tools, vat="1.25")


async def demo(journal: EventJournal) -> None:
    tools = Tools()
    async with record_run(journal, SESSION) as run:
        print("recorded:", await buggy(run, tools))
    print(f"  {len(tools.calls)} tool calls: {', '.join(tools.calls)}")

    tools = Tools()
    async with replay(journal, SESSION, serve={"tool_result"}) as run:
        await buggy(run, tools)
    assert run.divergence is None and tools.calls == []
    print(f"unchanged agent: {run.served} results served, {len(tools.calls)} tools run")

    tools = Tools()
    async with replay(journal, SESSION, serve={"tool_result"}, fork_on_divergence="fixed") as run:
        print("fixed agent:", await fixed(run, tools))
    divergence = run.divergence
    assert divergence is not None and divergence.recorded is not None
    print(f"  diverged at step {divergence.sequence}:")
    print(f"    recorded  {divergence.recorded.kind} {divergence.recorded.data}")
    print(f"    agent did {divergence.actual.kind} {divergence.actual.data}")
    print(
        f"  {run.served} result served from the recording; live on {run.branch_id!r}: {tools.calls}"
    )

    diff = await journal.diff(SESSION, "main", "fixed")
    print(f"main and fixed share steps 1..{diff.common_sequence}, then:")
    for name, records in (("main", diff.only_a), ("fixed", diff.only_b)):
        for record in records:
            print(f"  {name:<5} #{record.sequence} {record.kind:<11} {record.data}")


async def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(__doc__, file=sys.stderr)
        return 2
    if argv:
        async with open_journal(argv[0], durability="write") as journal:
            await demo(journal)
        print(f"try: eventstore --root {argv[0]} diff {SESSION} main fixed")
        return 0
    with tempfile.TemporaryDirectory() as root:
        async with open_journal(root, durability="write") as journal:
            await demo(journal)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
