"""``python -m benchmarks [--quick | --smoke] [--json PATH] [--only NAMES] [--plots DIR]``.

``--plots DIR --from-json PATH`` redraws the charts of an earlier run without running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from . import _appends, _frameworks, _live, _postgres, _reads, _report
from ._harness import MODES, Context, Row

__all__ = ("WORKLOADS", "main", "run")

Workload = Callable[[Context], Awaitable[list[Row]]]

#: Every workload by name, in the order of the table (issue 6's numbering).
WORKLOADS: dict[str, Workload] = {
    fn.__name__: fn
    for fn in (
        *_appends.WORKLOADS[:3],
        *_reads.WORKLOADS,
        *_live.WORKLOADS,
        *_appends.WORKLOADS[3:],
        *_postgres.WORKLOADS,
        *_frameworks.WORKLOADS,
    )
}

DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


async def run(ctx: Context, names: Sequence[str], *, echo: bool = True) -> list[Row]:
    """Run the named workloads in order; a workload that raises becomes an error row."""
    rows: list[Row] = []
    for name in names:
        start = time.perf_counter()
        try:
            produced = await WORKLOADS[name](ctx)
        except Exception as exc:
            produced = [Row(name, "ev/s", status="error", note=f"failed: {exc!r}")]
        rows.extend(produced)
        if echo:
            took = time.perf_counter() - start
            for row in produced:
                print(f"  {row.workload}: {_report.fmt(row.ours, row.unit)}", file=sys.stderr)
            print(f"[{name} done in {took:.1f} s]", file=sys.stderr)
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="mode",
        help="smaller sizes, under a minute",
    )
    mode.add_argument(
        "--smoke",
        action="store_const",
        const="smoke",
        dest="mode",
        help="tiny sizes, seconds: checks the suite still runs",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"where to write the results (default {DEFAULT_JSON})",
    )
    parser.add_argument(
        "--only",
        default="",
        metavar="NAMES",
        help="comma-separated workloads: " + ", ".join(WORKLOADS),
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch directory (default: a temporary one, removed after)",
    )
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("EVENTJOURNAL_PG_DSN", DEFAULT_DSN),
        help="PostgreSQL for workload 10 (env EVENTJOURNAL_PG_DSN)",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        metavar="DIR",
        help="also draw PNG charts of the run into DIR (needs matplotlib)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="with --plots: draw from an earlier run's JSON instead of running",
    )
    parser.set_defaults(mode="full")
    return parser


def _plot(doc: dict[str, Any], out: Path) -> None:
    from . import _plots

    written, skipped = _plots.draw(doc, out)
    for path in written:
        print(f"chart: {path}")
    if skipped:
        print(f"no data in this run for: {', '.join(skipped)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite, print the table, write the JSON; exit 1 if a workload errored."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.from_json is not None:
        if args.plots is None:
            parser.error("--from-json needs --plots DIR")
        _plot(json.loads(args.from_json.read_text()), args.plots)
        return 0
    if args.plots is not None:
        from ._plots import require_matplotlib

        require_matplotlib()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    sizes = MODES[args.mode]
    with tempfile.TemporaryDirectory(prefix="eventjournal-bench-", dir=args.workdir) as tmp:
        ctx = Context(sizes=sizes, workdir=Path(tmp), pg_dsn=args.pg_dsn)
        meta: dict[str, Any] = {
            "command": " ".join(["python -m benchmarks", *(argv or sys.argv[1:])]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": _report.machine(Path(tmp)),
        }
        start = time.perf_counter()
        rows = asyncio.run(run(ctx, names))
        meta["seconds"] = round(time.perf_counter() - start, 1)
        meta["load_average_end"] = os.getloadavg()
    print(_report.describe(meta["machine"]) + "\n")
    print(_report.table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(_report.to_json(rows, sizes, meta) + "\n")
    print(f"\n{sizes.name} run in {meta['seconds']} s; results in {args.json}")
    if args.plots is not None:
        # From the file just written, so the charts are exactly the run's JSON.
        _plot(json.loads(args.json.read_text()), args.plots)
    return 1 if any(row.status == "error" for row in rows) else 0
