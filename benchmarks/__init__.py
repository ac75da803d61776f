"""The benchmark suite: eventjournal against its peer and the physical limit.

Run ``python -m benchmarks`` (full, ~1M-event histories), ``--quick`` (under a
minute) or ``--smoke`` (seconds, used by the tests). It prints a table and
writes JSON (``--json PATH``, default ``benchmarks/results/latest.json``).

The peer is the ``eventsourcing`` library (``benchmarks/requirements.txt``):
its SQLite, POPO and PostgreSQL recorders. Workloads whose backend is missing
or unreachable print "n/a" instead of failing.
"""

from __future__ import annotations

from ._cli import WORKLOADS as WORKLOADS
from ._cli import main as main
from ._cli import run as run
from ._harness import MODES as MODES
from ._harness import Context as Context
from ._harness import Goal as Goal
from ._harness import Row as Row
from ._harness import Sizes as Sizes

__all__ = ("MODES", "WORKLOADS", "Context", "Goal", "Row", "Sizes", "main", "run")
