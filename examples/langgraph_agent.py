"""A LangGraph agent checkpointed in an eventjournal: interrupt, resume, time travel.

A small support agent (a fake model: plain Python, no network) drafts a reply
to a refund request, then asks a human to approve it (``interrupt``). We
resume it with "approve", then go back in time to the draft and run it again
with a firmer policy (``update_state`` on an earlier checkpoint). LangGraph
calls that a fork; the journal stores it as a branch of the thread's session,
so the event log shows both timelines.

Run: ``python examples/langgraph_agent.py [ROOT]`` (a temporary directory by default).
"""

from __future__ import annotations

import asyncio
import operator
import sys
import tempfile
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from journal import open_journal
from journal.integrations.langgraph import JournalCheckpointSaver

THREAD = "refund-42"


class State(TypedDict):
    request: str
    policy: str
    log: Annotated[list[str], operator.add]
    reply: str


def fake_model(request: str, policy: str) -> str:
    if policy == "strict":
        return "Refunds need a receipt: please send it and we will refund you."
    return f"Sorry about that! We refunded your order ({request})."


def draft(state: State) -> dict[str, Any]:
    reply = fake_model(state["request"], state["policy"])
    return {"reply": reply, "log": [f"draft[{state['policy']}]"]}


def review(state: State) -> dict[str, Any]:
    verdict = interrupt({"approve?": state["reply"]})
    return {"log": [f"review:{verdict}"]}


def send(state: State) -> dict[str, Any]:
    return {"log": [f"sent: {state['reply']}"]}


def build(saver: JournalCheckpointSaver) -> Any:
    graph = StateGraph(State)
    graph.add_node("draft", draft)
    graph.add_node("review", review)
    graph.add_node("send", send)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "review")
    graph.add_edge("review", "send")
    graph.add_edge("send", END)
    return graph.compile(checkpointer=saver)


async def main(root: str) -> None:
    async with open_journal(root) as journal:
        agent = build(JournalCheckpointSaver(journal))
        config: Any = {"configurable": {"thread_id": THREAD}}

        paused = await agent.ainvoke(
            {"request": "broken kettle", "policy": "kind", "log": []}, config
        )
        print("paused for a human:", paused["__interrupt__"][0].value["approve?"])
        done = await agent.ainvoke(Command(resume="approve"), config)
        print("first run:", " | ".join(done["log"]))

        # Time travel: back to the checkpoint before "draft" ran, with a stricter policy.
        history = [s async for s in agent.aget_state_history(config)]
        before_draft = next(s for s in history if s.next == ("draft",))
        forked = await agent.aupdate_state(before_draft.config, {"policy": "strict"})
        await agent.ainvoke(None, forked)
        done = await agent.ainvoke(Command(resume="approve"), config)
        print("after time travel:", " | ".join(done["log"]))

        print(f"\nthe thread is session {THREAD!r}; its branches:")
        for branch in await journal.list_branches(THREAD):
            records = await journal.read(THREAD, branch.branch_id, branch.fork_sequence + 1)
            origin = (
                f"forked from {branch.parent_branch} at #{branch.fork_sequence}"
                if branch.parent_branch
                else "the original run"
            )
            kinds = [r.kind.removeprefix("langgraph.") for r in records]
            print(f"  {branch.branch_id}: {origin}; {len(records)} records ({', '.join(kinds)})")
        count = sum(1 for _ in history)
        print(f"\n{count} checkpoints before the time travel, now {len(await _all(agent, config))}")


async def _all(agent: Any, config: Any) -> list[Any]:
    return [s async for s in agent.aget_state_history(config)]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(tmp))
