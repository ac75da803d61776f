"""Workload ``frameworks``: each agent-framework adapter against that framework's own SQLite store.

The same shape for every framework (issue 18): one thread or session of
``steps`` steps — put, get the latest, get by id where the framework has such
a call, list — on our adapter over an fsync :class:`~eventstore.FileEventStore`
and on the framework's SQLite-backed store, in alternating rounds of one run.
The measuring lives beside each adapter's peer (``_framework_<name>.py``); this
module makes their rows part of the table. A framework that is not installed
gives a row saying so, not a number.

Goals: writes >= 1x the framework's SQLite store (LangGraph ``put`` and
``put_writes``, OpenAI Agents ``add``, ADK ``append_event``), reads by id >= 1x
(LangGraph ``get by id``; the other two SDKs have no lookup by id).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from ._harness import Context, Goal, Row

__all__ = ("WORKLOADS", "frameworks")

#: (module, label, peer's name, the rows with a goal).
_FRAMEWORKS = (
    ("_framework_langgraph", "LangGraph", "AsyncSqliteSaver", ("put", "put_writes", "get by id")),
    ("_framework_openai_agents", "OpenAI Agents", "SQLiteSession", ("add",)),
    ("_framework_adk", "ADK", "SqliteSessionService", ("append_event",)),
)


def _steps(ctx: Context) -> tuple[int, int]:
    """Steps and rounds per mode: the issue's 1,000 steps in a full run."""
    return {"full": (1000, 3), "quick": (200, 2)}.get(ctx.sizes.name, (20, 1))


async def frameworks(ctx: Context) -> list[Row]:
    steps, rounds = _steps(ctx)
    rows: list[Row] = []
    for module, label, peer, goals in _FRAMEWORKS:
        try:
            bench = importlib.import_module(f"benchmarks.{module}")
            # Each run drives its own event loops (asyncio.run): off this one.
            measured: list[dict[str, Any]] = await asyncio.to_thread(bench.run, steps, rounds)
        except ImportError as exc:
            rows.append(Row(f"{label}: not installed", "ev/s", status="skipped", note=str(exc)))
            continue
        for found in measured:
            row = Row(f"{label} {found['name']}, {steps:,} steps", "ev/s")
            row.ours = found["ours"]
            row.baseline = found["peer"]
            row.baseline_name = f"{peer}, fsync"
            row.detail = {
                "unit": found["unit"],
                "ratio_range": found["ratio_range"],
                "peer_config": found["peer_config"],
            }
            if found["name"] in goals:
                row.goal = Goal("min_ratio", 1.0, f">= 1x {peer}")
            rows.append(row)
    return rows


WORKLOADS = (frameworks,)
