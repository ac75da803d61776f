"""A real graph on the journal, state for state against LangGraph's ``InMemorySaver``.

The graph has a subgraph that interrupts (so checkpoints and writes live in a
child namespace too), is resumed, then travelled back in time: an
``update_state`` on an earlier checkpoint and a re-run from it, which must fork
an eventjournal branch.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Interrupt, StateSnapshot, interrupt

from eventstore import MAIN
from journal import EventJournal
from journal.integrations.langgraph import JournalCheckpointSaver
from tests.conftest import StoreFactory


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


def _node(name: str) -> Callable[[State], dict[str, list[str]]]:
    def run(state: State) -> dict[str, list[str]]:
        return {"steps": [f"{name}@{len(state['steps'])}"]}

    return run


def _approve(state: State) -> dict[str, list[str]]:
    answer = interrupt({"question": "approve?", "seen": len(state["steps"])})
    return {"steps": [f"approved:{answer}"]}


def build_graph(checkpointer: BaseCheckpointSaver[Any]) -> Any:
    sub = StateGraph(State)
    sub.add_node("draft", _node("draft"))
    sub.add_node("approve", _approve)
    sub.add_edge(START, "draft")
    sub.add_edge("draft", "approve")
    sub.add_edge("approve", END)
    main = StateGraph(State)
    main.add_node("plan", _node("plan"))
    main.add_node("write", sub.compile())
    main.add_node("finish", _node("finish"))
    main.add_edge(START, "plan")
    main.add_edge("plan", "write")
    main.add_edge("write", "finish")
    main.add_edge("finish", END)
    return main.compile(checkpointer=checkpointer)


class _Ids:
    """Checkpoint ids as their rank among every id the saver holds: comparable across savers."""

    def __init__(self, ids: list[str]) -> None:
        self.rank = {cid: n for n, cid in enumerate(sorted(ids))}

    def of(self, config: Any) -> Any:
        if config is None:
            return None
        conf = config["configurable"]
        return (conf.get("checkpoint_ns", "").split(":")[0], self.rank[conf["checkpoint_id"]])


def _output(value: Any) -> Any:
    """A graph's output with each ``Interrupt`` as its value (its id hashes a checkpoint id)."""
    if isinstance(value, Interrupt):
        return ("interrupt", value.value)
    if isinstance(value, dict):
        return {k: _output(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_output(v) for v in value]
    return value


def _snapshot(s: StateSnapshot, ids: _Ids) -> dict[str, Any]:
    metadata = dict(s.metadata or {})
    return {
        "values": s.values,
        "next": s.next,
        "config": ids.of(s.config),
        "parent": ids.of(s.parent_config),
        "source": metadata.get("source"),
        "step": metadata.get("step"),
        "parents": sorted(
            (ns.split(":")[0], ids.rank[cid]) for ns, cid in metadata.get("parents", {}).items()
        ),
        "tasks": [
            (
                t.name,
                [i.value for i in t.interrupts],
                t.result,
                None if not isinstance(t.state, StateSnapshot) else _snapshot(t.state, ids),
            )
            for t in s.tasks
        ],
        "interrupts": [i.value for i in s.interrupts],
    }


async def _scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    """Run the story; return every observation, ids made comparable."""
    graph = build_graph(saver)
    config: Any = {"configurable": {"thread_id": "story"}}
    states: list[StateSnapshot] = []
    outputs: list[Any] = []
    outputs.append(await graph.ainvoke({"steps": ["start"]}, config))
    states.append(await graph.aget_state(config, subgraphs=True))
    outputs.append(await graph.ainvoke(Command(resume="yes"), config))
    states.append(await graph.aget_state(config, subgraphs=True))
    history = [s async for s in graph.aget_state_history(config)]
    # Time travel 1: edit the state before the subgraph ran, then run on from there.
    before_write = next(s for s in history if s.next == ("write",))
    forked = await graph.aupdate_state(before_write.config, {"steps": ["edited"]})
    outputs.append(await graph.ainvoke(None, forked))
    states.append(await graph.aget_state(config, subgraphs=True))
    outputs.append(await graph.ainvoke(Command(resume="no"), config))
    states.append(await graph.aget_state(config))
    # Time travel 2: replay from the checkpoint before "finish" of the first run.
    before_finish = next(s for s in history if s.next == ("finish",))
    outputs.append(await graph.ainvoke(None, before_finish.config))
    states.append(await graph.aget_state(config))
    states.append(await graph.aget_state(before_write.config))
    history = [s async for s in graph.aget_state_history(config)]
    ids = _Ids([t.checkpoint["id"] async for t in saver.alist(None)])
    return [
        _output(outputs),
        [_snapshot(s, ids) for s in states],
        [_snapshot(s, ids) for s in history],
        [_snapshot(s, ids) async for s in graph.aget_state_history(config, filter={"step": 1})],
        [_snapshot(s, ids) async for s in graph.aget_state_history(config, limit=3)],
    ]


async def test_graph_matches_in_memory_saver(store_factory: StoreFactory) -> None:
    expected = await _scenario(InMemorySaver())
    async with EventJournal(store_factory()) as journal:
        saver = JournalCheckpointSaver(journal)
        got = await _scenario(saver)
        assert got == expected
        # The two time travels forked: the thread is a session with three branches.
        branches = await journal.list_branches("story")
        assert [b.branch_id for b in branches if b.parent_branch is None] == [MAIN]
        forks = [b for b in branches if b.parent_branch is not None]
        assert len(forks) == 2
        for fork in forks:
            # Each fork starts right after the checkpoint it was made from.
            first = (await journal.read(fork.session_id, fork.branch_id, fork.fork_sequence + 1))[0]
            parent = first.data["parent"]
            at = await journal.read_at("story", fork.parent_branch or MAIN, [fork.fork_sequence])
            assert at[0] is not None and at[0].data["id"] == parent


async def test_sync_graph_from_a_worker_thread(store_factory: StoreFactory) -> None:
    def run(saver: BaseCheckpointSaver[Any]) -> list[Any]:
        graph = build_graph(saver)
        config: Any = {"configurable": {"thread_id": "sync-story"}}
        first = graph.invoke({"steps": ["start"]}, config)
        done = graph.invoke(Command(resume="ok"), config)
        history = list(graph.get_state_history(config))
        return _output([first, done, [(s.values, s.next) for s in history]])

    expected = run(InMemorySaver())
    async with EventJournal(store_factory()) as journal:
        saver = JournalCheckpointSaver(journal)
        assert await asyncio.to_thread(run, saver) == expected
        assert await journal.head("sync-story") > 0
