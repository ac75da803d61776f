"""What every workload shares: sizes per mode, the payload, timers, result rows.

A workload is an ``async`` function ``(ctx) -> list[Row]``. When a backend it
needs is missing it raises :class:`Unavailable`; the runner turns that into an
"n/a" row instead of failing the run.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventstore import EventRecord, EventStore, new_ulid
from eventstore._json import encode

__all__ = (
    "MODES",
    "OWN_BASELINES",
    "PAYLOAD",
    "Context",
    "Goal",
    "Row",
    "Sizes",
    "Unavailable",
    "best_rate",
    "file_store",
    "journal_api",
    "make_records",
    "median",
    "percentile",
    "quantiles",
    "pg_dsn_reachable",
    "rounds",
    "side",
    "timed",
)

#: One agent message, ~150 bytes of JSON: the ``data`` of every benchmark event.
PAYLOAD: dict[str, Any] = {
    "role": "assistant",
    "content": "Checked the three failing tests; the fixture leaks a temp dir.",
    "tool": "pytest",
    "tokens": 42,
    "turn": 7,
}


class Unavailable(Exception):
    """A backend or peer this workload needs is not importable or not reachable."""


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does in one mode."""

    name: str
    seq_fsync: int
    seq_write: int
    sessions: int
    per_session: int
    batches: int
    memory_appends: int
    big: int
    small: int
    fork_small: int
    #: Branches one session grows to while fork cost is measured against the count.
    fork_branches: int
    repeats: int
    samples: int
    live_seconds: float
    live_rate: int
    subscribers: int
    pg_single: int
    pg_batches: int
    #: Sessions created (one event each) against as many appends to existing ones.
    new_sessions: int


MODES: dict[str, Sizes] = {
    "full": Sizes(
        name="full",
        seq_fsync=3000,
        seq_write=30_000,
        sessions=100,
        per_session=50,
        batches=300,
        memory_appends=100_000,
        big=1_000_000,
        small=10_000,
        fork_small=10,
        fork_branches=1000,
        repeats=3,
        samples=50,
        live_seconds=3.0,
        live_rate=10_000,
        subscribers=100,
        pg_single=1000,
        pg_batches=50,
        new_sessions=10_000,
    ),
    "quick": Sizes(
        name="quick",
        seq_fsync=300,
        seq_write=3000,
        sessions=100,
        per_session=5,
        batches=30,
        memory_appends=20_000,
        big=100_000,
        small=10_000,
        fork_small=10,
        fork_branches=1000,
        repeats=3,
        samples=15,
        live_seconds=0.5,
        live_rate=10_000,
        subscribers=100,
        pg_single=200,
        pg_batches=10,
        new_sessions=200,
    ),
    "smoke": Sizes(
        name="smoke",
        seq_fsync=20,
        seq_write=50,
        sessions=100,
        per_session=2,
        batches=3,
        memory_appends=500,
        big=2000,
        small=200,
        fork_small=10,
        fork_branches=20,
        repeats=1,
        samples=3,
        live_seconds=0.1,
        live_rate=1000,
        subscribers=100,
        pg_single=10,
        pg_batches=2,
        new_sessions=50,
    ),
}


@dataclass(frozen=True)
class Goal:
    """A target for one row.

    ``kind`` is ``"min_ratio"`` (ours/baseline must reach ``value``),
    ``"max_ratio"`` (ours/baseline must stay under ``value``, for a cost that
    must not grow) or ``"max_value"`` (ours, in the row's unit, at most ``value``).
    """

    kind: str
    value: float
    text: str

    def met(self, ours: float | None, ratio: float | None) -> bool | None:
        if self.kind == "max_value":
            return None if ours is None else ours <= self.value
        if ratio is None:
            return None
        return ratio >= self.value if self.kind == "min_ratio" else ratio <= self.value


#: How a ``baseline_name`` starts when the baseline is not the peer: our own
#: figure in other conditions, the machine's limit, or the rate a workload asked for.
OWN_BASELINES = ("ours", "limit", "asked")


@dataclass
class Row:
    """One line of the results table.

    ``unit`` is ``"ev/s"`` (higher is better) or ``"s"`` (a duration, lower is
    better). ``ratio`` is oriented so that above 1 means ours is better, except
    for ``max_ratio`` goals where it is the growth of our own cost.
    """

    workload: str
    unit: str
    ours: float | None = None
    baseline: float | None = None
    baseline_name: str = ""
    limit: float | None = None
    goal: Goal | None = None
    status: str = "ok"
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    #: Set when the figure was measured outside the goal's conditions (e.g. the
    #: writer could not hold the required rate): the goal then counts as missed.
    unmet_condition: str = ""

    @property
    def peer_baseline(self) -> bool:
        """Whether the baseline is the peer library's (so absent without it)."""
        return bool(self.baseline_name) and not self.baseline_name.startswith(OWN_BASELINES)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline is None or self.ours == 0 or self.baseline == 0:
            return None
        if self.goal is not None and self.goal.kind == "max_ratio":
            return self.ours / self.baseline
        if self.unit == "ev/s":
            return self.ours / self.baseline
        return self.baseline / self.ours

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        met = self.goal.met(self.ours, self.ratio)
        return False if met and self.unmet_condition else met


@dataclass
class Context:
    """Per-run state: sizes, a scratch directory and data built once, shared."""

    sizes: Sizes
    workdir: Path
    pg_dsn: str
    cache: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.workdir / name


# -- backends -------------------------------------------------------------------


def _load(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"{module}.{name} not available ({exc})") from None


def file_store(root: Path, durability: str = "fsync") -> EventStore:
    """A ``FileEventStore`` over ``root``; :class:`Unavailable` until it exists."""
    cls = _load("eventstore.file", "FileEventStore")
    store: EventStore = cls(root, durability=durability)
    return store


def journal_api() -> Any:
    """The ``EventJournal`` class; :class:`Unavailable` until journal and stream exist."""
    _load("stream", "EventStreamHub")
    return _load("journal", "EventJournal")


def pg_dsn_reachable(dsn: str) -> None:
    """Raise :class:`Unavailable` unless a PostgreSQL server answers at ``dsn``."""
    try:
        import psycopg
    except ImportError as exc:
        raise Unavailable(f"psycopg not installed ({exc})") from None
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.Error as exc:
        raise Unavailable(f"no PostgreSQL server at {dsn}: {exc}") from None


# -- records --------------------------------------------------------------------


def make_records(
    session_id: str, count: int, *, start: int = 1, branch_id: str = "main"
) -> list[EventRecord]:
    """``count`` contiguous records built outside any timed section.

    Built directly (not via ``EventRecord.new``) because validation is the
    store's cost to pay at append time, not the fixture's.
    """
    return [
        EventRecord(
            session_id=session_id,
            branch_id=branch_id,
            sequence=seq,
            kind="message",
            data=PAYLOAD,
            event_id=new_ulid(),
        )
        for seq in range(start, start + count)
    ]


def record_lines(records: list[EventRecord]) -> list[bytes]:
    """The exact bytes a JSONL store writes for each record."""
    return [encode(r) + b"\n" for r in records]


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def side(row: Row, who: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run one side (ours, the peer, the limit) of a row; a failure costs only that side.

    A missing backend becomes an "n/a" note; any other exception marks the row
    ``error`` (the run then exits non-zero) but the other sides still run.
    """
    try:
        return await fn()
    except Unavailable as exc:
        row.note = "; ".join(filter(None, [row.note, f"{who} n/a: {exc}"]))
    except Exception as exc:
        row.status = "error"
        row.note = "; ".join(filter(None, [row.note, f"{who} failed: {exc!r}"]))
    return None


async def rounds(
    ctx: Context, row: Row, count: int, sides: Mapping[str, Callable[[], Awaitable[float]]]
) -> None:
    """Time each side (``ours``, ``peer``, ``limit``) once per round, in turns.

    Taking turns means a neighbour's burst of load hits every side alike, so
    the ratio holds even when the absolute figures wobble. The fastest round
    of each side counts, as ``count`` events per second; a side that fails is
    dropped (its note says why) and the others go on.
    """
    durations: dict[str, list[float]] = {name: [] for name in sides}
    alive = dict(sides)
    for _ in range(ctx.sizes.repeats):
        for name, once in list(alive.items()):
            took = await side(row, name, once)
            if took is None:
                del alive[name]
            else:
                durations[name].append(took)
    rates = {name: count / min(d) if d else None for name, d in durations.items()}
    row.ours = rates.get("ours")
    row.baseline = rates.get("peer")
    row.limit = rates.get("limit")
    row.detail["rounds_s"] = durations


# -- timing ---------------------------------------------------------------------


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    """Seconds one awaited call takes, by ``time.perf_counter``."""
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def best_rate(count: int, durations: list[float]) -> float:
    """Events per second of the fastest repeat: noise from neighbours only slows."""
    return count / min(durations)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile; ``samples`` need not be sorted."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


#: The percentiles a latency distribution is kept at in the JSON: every whole
#: percent, then the tail finer, so a CDF can be drawn without every sample.
CDF_PERCENTILES = (*range(0, 100), 99.5, 99.9, 99.95, 99.99, 100.0)


def quantiles(samples: list[float], pcts: tuple[float, ...] = CDF_PERCENTILES) -> dict[str, Any]:
    """Nearest-rank percentiles of ``samples`` at each of ``pcts``, sorted once."""
    ordered = sorted(samples)
    last = len(ordered) - 1
    seconds = [ordered[max(0, min(last, round(p / 100 * len(ordered)) - 1))] for p in pcts]
    return {"percentiles": list(pcts), "seconds": seconds}
