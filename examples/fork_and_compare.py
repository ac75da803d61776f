"""Fork an agent session at step 4, let both branches go on, and compare them.

An agent answers a travel question in ten steps. We go back to step 4 — right
after the forecast came back — fork the session there (nothing is copied), and
let the fork decide differently. Then we print where the two branches diverge and what
each did since.

Run: ``python examples/fork_and_compare.py [ROOT]`` (a temporary directory by default).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from typing import Any

from journal import EventJournal, open_journal

SESSION = "trip-planner"

ORIGINAL: list[tuple[str, dict[str, Any]]] = [
    ("message", {"role": "user", "text": "Is it a good weekend for Bergen?"}),
    ("phase", {"name": "plan"}),
    ("tool_call", {"tool": "weather", "args": {"city": "Bergen"}}),
    ("tool_result", {"tool": "weather", "result": "rain, 9°C"}),
    ("thought", {"text": "Rain. Suggest indoor plans."}),
    ("phase", {"name": "research"}),
    ("tool_call", {"tool": "search", "args": {"q": "Bergen museums"}}),
    ("tool_result", {"tool": "search", "result": ["KODE", "Bryggens Museum"]}),
    ("phase", {"name": "answer"}),
    ("message", {"role": "assistant", "text": "Expect rain: KODE and Bryggens Museum."}),
]

ALTERNATIVE: list[tuple[str, dict[str, Any]]] = [
    ("thought", {"text": "Rain. Maybe fly somewhere drier?"}),
    ("tool_call", {"tool": "flights", "args": {"to": "Bergen"}}),
    ("tool_result", {"tool": "flights", "result": "sold out"}),
    ("thought", {"text": "No flights: suggest the train."}),
    ("message", {"role": "assistant", "text": "Flights are sold out; take the Bergen Line."}),
]


def describe(kind: str, data: Any) -> str:
    if kind == "tool_call":
        return f"calls {data['tool']}({data['args']})"
    if kind == "tool_result":
        return f"{data['tool']} -> {data['result']}"
    if kind == "message":
        return f"{data['role']}: {data['text']}"
    if kind == "phase":
        return f"-- {data['name']} --"
    return f"({data['text']})"


async def compare(journal: EventJournal, left: str, right: str) -> None:
    a = await journal.read(SESSION, left)
    b = await journal.read(SESSION, right)
    common = 0
    for x, y in zip(a, b, strict=False):
        if x.event_id != y.event_id:
            break
        common = x.sequence
    print(f"{left} and {right} share steps 1..{common}, then diverge:")
    for name, events in ((left, a), (right, b)):
        print(f"\n  since step {common}, {name} did:")
        for event in events[common:]:
            print(f"    {event.sequence:>2}  {describe(event.kind, event.data)}")


async def main(root: str) -> None:
    async with open_journal(root) as journal:
        for kind, data in ORIGINAL:
            await journal.record(SESSION, kind, data)
        info = await journal.create_branch(SESSION, "try-flights", fork_sequence=4)
        print(f"forked {SESSION} at step {info.fork_sequence} as {info.branch_id!r}\n")
        # The fork inherits steps 1-4 from main; its own history starts at step 5.
        for kind, data in ALTERNATIVE:
            await journal.record(SESSION, kind, data, branch_id="try-flights")
        await compare(journal, "main", "try-flights")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(tmp))
