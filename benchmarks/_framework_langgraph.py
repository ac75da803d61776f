"""LangGraph checkpointing: ``JournalCheckpointSaver`` against LangGraph's SQLite saver.

One thread of ``steps`` checkpoints, each the child of the one before (as a
graph run makes them), each followed by one task's pending writes. Then
every checkpoint read back by id, the latest read ``steps`` times, and the
whole thread listed. Last, a real graph (one node looping ``steps // 5``
super-steps, LangGraph's default ``"async"`` durability, so a put and the
previous step's writes may overlap). Both savers get the same checkpoints, in
the same process, through their async API:

* ours: :class:`~journal.integrations.langgraph.JournalCheckpointSaver` on a
  :class:`~eventstore.FileEventStore` with ``durability="fsync"`` (each append
  is on disk before it returns);
* peer: ``langgraph-checkpoint-sqlite``'s ``AsyncSqliteSaver`` on a file
  database, as its docs set it up (WAL; ``synchronous`` left at SQLite's
  default, read back into the rows' ``peer_config``).

Rows are ``{"name", "unit", "ours", "peer", "ratio", "ratio_range",
"peer_config"}`` with throughputs in operations per second (medians over the
rounds) and ``ratio = ours / peer`` (above 1: we are faster); ``peer`` is
``None`` if the SQLite saver is not installed.

Run: ``python -m benchmarks._framework_langgraph [STEPS]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ("run",)

_UNITS = {"list": "checkpoints/s", "graph step": "super-steps/s"}


def _checkpoints(steps: int) -> list[Any]:
    from langgraph.checkpoint.base import empty_checkpoint

    out = []
    messages: list[dict[str, str]] = []
    for step in range(steps):
        messages = [*messages[-4:], {"role": "assistant", "content": f"step {step} " * 8}]
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": list(messages), "step": step}
        cp["channel_versions"] = {"messages": step + 1, "step": step + 1}
        cp["versions_seen"] = {"agent": {"messages": step}}
        out.append(cp)
    return out


async def _workload(saver: Any, checkpoints: list[Any]) -> dict[str, float]:
    """Seconds spent in each operation kind, for ``len(checkpoints)`` operations each."""
    spent = dict.fromkeys(("put", "put_writes", "get by id", "get latest", "list"), 0.0)
    clock = time.perf_counter
    thread = {"configurable": {"thread_id": "bench", "checkpoint_ns": ""}}
    configs = []
    parent: dict[str, Any] = thread
    for step, cp in enumerate(checkpoints):
        metadata: Any = {"source": "loop", "step": step, "parents": {}}
        started = clock()
        parent = await saver.aput(parent, cp, metadata, cp["channel_versions"])
        spent["put"] += clock() - started
        started = clock()
        await saver.aput_writes(parent, [("messages", ["hi"]), ("step", step)], f"task-{step}")
        spent["put_writes"] += clock() - started
        configs.append(parent)

    async def timed(name: str, call: Callable[[], Awaitable[Any]]) -> None:
        started = clock()
        await call()
        spent[name] += clock() - started

    async def by_id() -> None:
        for config in configs:
            assert (await saver.aget_tuple(config)) is not None

    async def latest() -> None:
        for _ in configs:
            assert (await saver.aget_tuple(thread)) is not None

    async def listing() -> None:
        assert len([t async for t in saver.alist(thread)]) == len(configs)

    await timed("get by id", by_id)
    await timed("get latest", latest)
    await timed("list", listing)
    started = clock()
    await _graph(saver, _graph_steps(len(checkpoints)))
    spent["graph step"] = clock() - started
    return spent


def _graph_steps(steps: int) -> int:
    return max(10, steps // 5)


async def _graph(saver: Any, steps: int) -> None:
    """A real run: a one-node loop of ``steps`` super-steps, LangGraph's default durability."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        n: int
        log: list[str]

    def tick(state: State) -> dict[str, Any]:
        return {"n": state["n"] + 1, "log": [*state["log"][-4:], f"tick {state['n']}"]}

    builder = StateGraph(State)
    builder.add_node("tick", tick)
    builder.add_edge(START, "tick")
    builder.add_conditional_edges("tick", lambda s: END if s["n"] >= steps else "tick")
    graph = builder.compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": "graph"}, "recursion_limit": steps + 10}
    assert (await graph.ainvoke({"n": 0, "log": []}, config))["n"] == steps


async def _ours(root: Path, checkpoints: list[Any]) -> dict[str, float]:
    from journal import open_journal
    from journal.integrations.langgraph import JournalCheckpointSaver

    async with open_journal(root, durability="fsync") as journal:
        return await _workload(JournalCheckpointSaver(journal), checkpoints)


async def _peer(path: Path, checkpoints: list[Any]) -> tuple[dict[str, float], dict[str, Any]]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        pragmas = {}
        for name in ("journal_mode", "synchronous"):
            async with saver.conn.execute(f"PRAGMA {name}") as cursor:
                row = await cursor.fetchone()
                pragmas[name] = None if row is None else row[0]
        return await _workload(saver, checkpoints), pragmas


def run(steps: int = 1000, rounds: int = 3) -> list[dict[str, Any]]:
    """Measure both savers on one thread of ``steps`` checkpoints; one row per operation.

    ``rounds`` alternate ours and the peer's, each on fresh files; a row gives
    the median throughputs and ratio, and the ratio's range over the rounds.
    """
    checkpoints = _checkpoints(steps)
    ours: list[dict[str, float]] = []
    peer: list[dict[str, float]] = []
    pragmas: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(rounds):
            ours.append(asyncio.run(_ours(Path(tmp) / f"journal-{n}", checkpoints)))
            try:
                spent, pragmas = asyncio.run(_peer(Path(tmp) / f"peer-{n}.sqlite", checkpoints))
            except ImportError:
                continue
            peer.append(spent)
    rows = []
    for name in ours[0]:
        count = _graph_steps(steps) if name == "graph step" else steps
        ops = [count / r[name] for r in ours]
        peer_ops = [count / r[name] for r in peer]
        ratios = [a / b for a, b in zip(ops, peer_ops, strict=False)]
        rows.append(
            {
                "name": name,
                "unit": _UNITS.get(name, "calls/s"),
                "ours": round(statistics.median(ops), 1),
                "peer": round(statistics.median(peer_ops), 1) if peer_ops else None,
                "ratio": round(statistics.median(ratios), 2) if ratios else None,
                "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)] if ratios else None,
                "peer_config": pragmas,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000):
        print(row)
