"""The printed table and the JSON document of one run."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._harness import Row, Sizes

__all__ = ("describe", "fmt", "machine", "table", "to_json")


def fmt(value: float | None, unit: str) -> str:
    """A figure for humans: events/s with separators, durations in µs or ms."""
    if value is None:
        return "n/a"
    if unit == "ev/s":
        return f"{value:,.0f} ev/s"
    if value < 1e-3:
        return f"{value * 1e6:,.1f} µs"
    return f"{value * 1e3:,.2f} ms"


def _ratio(row: Row) -> str:
    ratio = row.ratio
    return "" if ratio is None else f"{ratio:.2f}x"


def _met(row: Row) -> str:
    if row.status == "error":
        return "ERROR"
    met = row.met
    return "" if row.goal is None else "n/a" if met is None else "met" if met else "MISSED"


def _notes(row: Row) -> str:
    unmet = row.unmet_condition and f"goal not met because {row.unmet_condition}"
    return "; ".join(filter(None, [row.note, unmet]))


def table(rows: list[Row]) -> str:
    """A Markdown table: workload, ours, baseline, ratio, goal, met, physical limit."""
    header = ("workload", "ours", "peer / baseline", "ratio", "goal", "met", "physical limit")
    lines = [header]
    for row in rows:
        baseline = fmt(row.baseline, row.unit) if row.baseline_name else ""
        if row.baseline_name:
            baseline = f"{baseline} ({row.baseline_name})"
        limit = "" if row.limit is None else fmt(row.limit, row.unit)
        goal = row.goal.text if row.goal else ""
        lines.append(
            (row.workload, fmt(row.ours, row.unit), baseline, _ratio(row), goal, _met(row), limit)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    ]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"- {row.workload}: {text}" for row in rows if (text := _notes(row))]
    return "\n".join(out + (["", *notes] if notes else []))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    try:
        out = (
            subprocess.run(
                ["df", "-T", str(path)], capture_output=True, text=True, check=True, timeout=5
            )
            .stdout.splitlines()[-1]
            .split()
        )
        return f"{out[1]} on {out[0]}"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine(workdir: Path) -> dict[str, Any]:
    """What the figures depend on: CPUs, disk, interpreter, library versions."""
    versions: dict[str, str | None] = {}
    for dist in ("eventsourcing", "msgspec", "psycopg", "asyncpg"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "filesystem": _filesystem(workdir),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def describe(info: dict[str, Any]) -> str:
    """One line naming the machine, for the top of the printed table."""
    load = ", ".join(f"{x:.2f}" for x in info["load_average"])
    return (
        f"{info['nproc']} CPUs ({info['cpu']}), {info['filesystem']}, Python {info['python']}, "
        f"SQLite {info['sqlite']}, eventsourcing {info['versions']['eventsourcing']}; "
        f"load average at start {load}"
    )


def to_json(rows: list[Row], sizes: Sizes, meta: dict[str, Any]) -> str:
    doc = {
        "mode": sizes.name,
        "sizes": sizes.__dict__,
        **meta,
        "results": [
            {
                "workload": row.workload,
                "unit": row.unit,
                "ours": row.ours,
                "baseline": row.baseline,
                "baseline_name": row.baseline_name or None,
                "peer_baseline": row.peer_baseline,
                "ratio": row.ratio,
                "limit": row.limit,
                "goal": row.goal.text if row.goal else None,
                "met": row.met,
                "unmet_condition": row.unmet_condition or None,
                "status": row.status,
                "note": row.note or None,
                "detail": row.detail,
            }
            for row in rows
        ],
    }
    return json.dumps(doc, indent=2, default=str)
