"""PNG charts of one run's JSON: ``python -m benchmarks --plots DIR [--from-json PATH]``.

The claims that matter most are shapes: costs that stay flat as the history
grows, rates against the peer and the machine's limit, latency distributions.
Every chart is drawn from the JSON alone, so an old run can be redrawn.
matplotlib is a requirement of the benchmarks (``benchmarks/requirements.txt``),
never of the library; it is imported here only, with the file-only Agg backend.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ("CHARTS", "draw", "require_matplotlib")

#: One colour per side, the same in every chart.
OURS = "#1f77b4"
PEER = "#ff7f0e"
LIMIT = "#222222"
#: The live workloads are all ours: shades and dashes tell them apart.
LIVE_STYLES = (("#6baed6", "-"), ("#08519c", "--"), ("#2ca02c", ":"))
DPI = 100

Doc = dict[str, Any]


def require_matplotlib() -> None:
    """Fail before a long run rather than after it.

    :raises SystemExit: naming the requirements file, if matplotlib is missing.
    """
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "--plots needs matplotlib: pip install -r benchmarks/requirements.txt"
        ) from None
    matplotlib.use("Agg")


def _results(doc: Doc) -> list[Doc]:
    return [r for r in doc["results"] if r["status"] == "ok"]


def _duration_unit(values: list[float]) -> tuple[float, str]:
    """The factor and unit that keep the largest of ``values`` readable."""
    return (1e6, "µs") if max(values, default=0) < 1e-3 else (1e3, "ms")


def _size_label(size: float) -> str:
    return f"{size / 1e6:g}M" if size >= 1e6 else f"{size / 1e3:g}k" if size >= 1e3 else f"{size:g}"


def _plain(value: float, _position: object) -> str:
    """Log-axis ticks as ``100``, ``1000``, not ``10^2``."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _caption(fig: Any, doc: Doc) -> None:
    machine = doc.get("machine", {})
    text = (
        f"{doc.get('command', 'python -m benchmarks')} ({doc.get('mode')} mode), "
        f"{doc.get('started', '')}; {machine.get('nproc')} CPUs, {machine.get('filesystem')}"
    )
    fig.text(0.995, 0.005, text, ha="right", va="bottom", fontsize=7, color="grey")


def _history_axes(ax: Any, sizes: list[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(sizes, [_size_label(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("history length (events in the branch, log scale)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)


def _history_size(doc: Doc, plt: Any) -> Any:
    """Tail read and cold open against the history's length, ours and SQLite."""
    panels = []
    for series in ("tail read 100", "cold open -> head"):
        rows = sorted(
            (r for r in _results(doc) if r["detail"].get("series") == series and r["ours"]),
            key=lambda r: r["detail"]["history_size"],
        )
        if rows:
            panels.append((series, rows))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(9, 4.2), squeeze=False)
    for ax, (series, rows) in zip(axes[0], panels, strict=True):
        sizes = [r["detail"]["history_size"] for r in rows]
        peer = [(rows[0]["baseline"] if r is rows[0] else r["detail"].get("sqlite")) for r in rows]
        factor, unit = _duration_unit([r["ours"] for r in rows] + [p for p in peer if p])
        ax.plot(sizes, [r["ours"] * factor for r in rows], "o-", color=OURS, label="eventjournal")
        if all(peer) and rows[0]["baseline_name"] == "SQLite":
            ax.plot(sizes, [p * factor for p in peer], "s--", color=PEER, label="SQLite (peer)")
        _history_axes(ax, sizes)
        ax.set_title(series.replace("->", "→"))
        ax.set_ylabel(f"median cost ({unit})")
        ax.legend(loc="lower right")
    fig.suptitle("Cost against history length: flat is the claim")
    return fig


def _fork(doc: Doc, plt: Any) -> Any:
    """Fork cost against the history's length and against the session's branch count."""
    by_size = sorted(
        (
            r
            for r in _results(doc)
            if r["detail"].get("series") == "fork (create_branch)" and r["ours"]
        ),
        key=lambda r: r["detail"]["history_size"],
    )
    growth = next((r for r in _results(doc) if "by_branches" in r["detail"]), None)
    if not by_size and growth is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.2))
    if by_size:
        sizes = [r["detail"]["history_size"] for r in by_size]
        factor, unit = _duration_unit([r["ours"] for r in by_size])
        left.plot(sizes, [r["ours"] * factor for r in by_size], "o-", color=OURS)
        _history_axes(left, sizes)
        left.set_ylabel(f"median cost of create_branch ({unit})")
    left.set_title("against history length")
    if growth is not None:
        points, detail = growth["detail"]["by_branches"], growth["detail"]
        factor, unit = _duration_unit(points["seconds"] + [detail["with_many"]])
        right.plot(
            points["branches"],
            [s * factor for s in points["seconds"]],
            "o-",
            color=OURS,
            label="while growing one session",
        )
        count = points["branches"][-1] + 1 if points["branches"] else 1
        many = growth["workload"].rsplit("with ", 1)[-1].split()[0].replace(",", "")
        if many.isdigit():
            count = int(many)
        right.plot(
            [1, count],
            [detail["with_one"] * factor, detail["with_many"] * factor],
            "D",
            color=LIMIT,
            label="medians, sampled in turns",
        )
        right.set_xscale("log")
        right.xaxis.set_major_formatter(_plain)
        right.set_xlabel("branches in the session (log scale)")
        right.set_ylabel(f"cost of create_branch ({unit})")
        right.set_ylim(bottom=0)
        right.grid(True, alpha=0.3)
        right.legend(loc="lower right")
    right.set_title("against branches in the session")
    fig.suptitle("Fork cost (file store, fsync); eventsourcing has no branches")
    return fig


def _fmt_rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.3g}M"
    return f"{value / 1e3:.3g}k" if value >= 1e3 else f"{value:.3g}"


def _peer(row: Doc) -> bool:
    """Whether the row's baseline is the peer's (older JSON: any name but "ours ...")."""
    if "peer_baseline" in row:
        return bool(row["peer_baseline"])
    return not (row["baseline_name"] or "").startswith("ours")


def _throughput(doc: Doc, plt: Any) -> Any:
    """Events per second against the peer, with the physical limit marked."""
    rows = [
        r
        for r in _results(doc)
        if r["unit"] == "ev/s" and r["ours"] and (r["limit"] or (r["baseline"] and _peer(r)))
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.62 * len(rows) + 1.6))
    labelled: set[str] = set()

    def once(label: str) -> str | None:
        return None if label in labelled or labelled.add(label) else label

    for i, row in enumerate(rows):
        ax.barh(i - 0.2, row["ours"], 0.38, color=OURS, label=once("eventjournal"))
        ax.text(row["ours"], i - 0.2, f" {_fmt_rate(row['ours'])}", va="center", fontsize=7)
        if row["baseline"] and _peer(row):
            ax.barh(i + 0.2, row["baseline"], 0.38, color=PEER, label=once("peer"))
            ax.text(
                row["baseline"], i + 0.2, f" {_fmt_rate(row['baseline'])}", va="center", fontsize=7
            )
        if row["limit"]:
            ax.vlines(
                row["limit"], i - 0.45, i + 0.45, color=LIMIT, lw=2.5, label=once("physical limit")
            )
            ax.text(row["limit"], i - 0.45, f" {_fmt_rate(row['limit'])}", fontsize=7, va="top")
    labels = []
    for row in rows:
        name = textwrap.shorten(row["workload"], 46, placeholder="…")
        peer = row["baseline_name"] if row["baseline"] and _peer(row) else "no peer"
        labels.append(f"{name}\nvs {textwrap.shorten(peer, 40, placeholder='…')}")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(lambda value, _position: _fmt_rate(value))
    ax.set_xlabel("events per second (log scale; higher is better)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Throughput against the peer (eventsourcing) and the machine's limit")
    return fig


def _live(doc: Doc, plt: Any) -> Any:
    """Append→delivery latency distributions of the live workloads."""
    rows = [r for r in _results(doc) if "cdf" in r["detail"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for row, (colour, dash) in zip(rows, LIVE_STYLES, strict=False):
        detail = row["detail"]
        cdf = detail["cdf"]
        label = (
            f"{detail['subscribers']} subscriber{'s' if detail['subscribers'] != 1 else ''}, "
            f"{detail['store']} store (held {detail['achieved_rate']:,.0f} ev/s)"
        )
        x = [s * 1e6 for s in cdf["seconds"]]
        ax.plot(x, [p / 100 for p in cdf["percentiles"]], dash, color=colour, lw=2, label=label)
    goal = next((r["goal"] for r in rows if r["goal"]), None)
    if goal:
        ax.axvline(1000, color="red", ls="-.", lw=1, label=f"goal: p99 {goal}")
    for level, name in ((0.5, "p50"), (0.99, "p99")):
        ax.axhline(level, color="grey", ls=":", lw=1)
        ax.text(0.005, level, name, transform=ax.get_yaxis_transform(), va="bottom", fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_plain)
    ax.set_xlabel("append → delivery latency (µs, log scale)")
    ax.set_ylabel("fraction of deliveries at or below")
    ax.set_ylim(0, 1.005)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Live subscriptions: latency distribution (CDF)")
    return fig


#: File name -> the function drawing it (``None`` when the run has no data for it).
CHARTS: dict[str, Callable[[Doc, Any], Any]] = {
    "history_size.png": _history_size,
    "fork.png": _fork,
    "throughput.png": _throughput,
    "live_latency.png": _live,
}


def draw(doc: Doc, out: Path) -> tuple[list[Path], list[str]]:
    """Write every chart the run has data for into ``out``.

    :returns: the files written, and the names of the charts skipped for lack of data.
    :raises SystemExit: if matplotlib is not installed.
    """
    require_matplotlib()
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for name, chart in CHARTS.items():
        fig = chart(doc, plt)
        if fig is None:
            skipped.append(name)
            continue
        _caption(fig, doc)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(out / name, dpi=DPI)
        plt.close(fig)
        written.append(out / name)
    return written, skipped
