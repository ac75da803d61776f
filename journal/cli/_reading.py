"""The reading commands: ``sessions``, ``branches``, ``show``, ``tail``, ``diff``, ``stats``.

They open the store ``read_only=True``, so they work while a writer process holds it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from eventstore import BranchInfo, EventRecord
from eventstore.file import FileEventStore

from .._diff import diff_branches
from ._context import (
    BRANCH,
    EXIT_OK,
    AddCommand,
    Context,
    add_branch,
    add_session,
    parse_since,
    require_branch,
    require_session,
    seconds,
    sequence,
)
from ._render import branch_state, branch_tree, format_record, format_time, plural, table

__all__ = (
    "add_commands",
    "branches",
    "diff",
    "sessions",
    "show",
    "stats",
    "tail",
)


def add_commands(command: AddCommand) -> None:
    """Register the reading commands."""
    p = command("sessions", "List sessions: branches, events, last activity.", sessions)
    p.add_argument("--prefix", metavar="P", help="only ids starting with P")
    p.add_argument(
        "--active-since", type=parse_since, metavar="T", help="active since: 7d ago, or an ISO time"
    )
    p.add_argument("--limit", type=sequence(0), metavar="N", help="at most N sessions")

    p = command("branches", "Show a session's branch tree: fork points, heads, merges.", branches)
    add_session(p)

    p = command("show", "Print a branch's history, inherited events included.", show)
    add_session(p)
    add_branch(p)
    p.add_argument("--from", dest="from_sequence", type=sequence(1), default=1, metavar="N")
    p.add_argument("--to", dest="to_sequence", type=sequence(0), metavar="M")
    p.add_argument(
        "--kind",
        "-k",
        dest="kinds",
        action="append",
        metavar="K",
        help="only events of kind K (repeat it, or K1,K2)",
    )

    p = command("tail", "Print the last events; with -f, follow a writer until Ctrl-C.", tail)
    add_session(p)
    add_branch(p)
    p.add_argument("-n", "--lines", type=sequence(0), default=10, metavar="N", help="default 10")
    p.add_argument("-f", "--follow", action="store_true", help="wait for new events")
    p.add_argument("--interval", type=seconds, default=0.1, metavar="S", help="poll every S s")

    p = command("diff", "Where two branches diverge and what each did since.", diff)
    add_session(p)
    p.add_argument("a", type=BRANCH, metavar="A")
    p.add_argument("b", type=BRANCH, metavar="B")

    p = command("stats", "Sessions, events and bytes; the largest sessions.", stats)
    p.add_argument("--top", type=sequence(0), default=5, metavar="N", help="default 5")


#: Seconds between checks that ``tail -f``'s reader is still there.
READER_CHECK = 0.5


def _own_events(infos: Sequence[BranchInfo]) -> int:
    return sum(info.head - info.fork_sequence for info in infos)


async def sessions(ctx: Context) -> int:
    """``eventstore sessions [--prefix P] [--active-since T] [--limit N]``: one row per session."""
    rows: list[list[object]] = []
    async with ctx.reader() as store:
        infos = await store.sessions(
            prefix=ctx.args.prefix, active_after=ctx.args.active_since, limit=ctx.args.limit
        )
    for info in infos:
        if ctx.json:
            ctx.out.json(
                {
                    "session_id": info.session_id,
                    "branches": info.branches,
                    "events": info.events,
                    "last_activity": info.last_activity,
                }
            )
        else:
            when = format_time(info.last_activity)
            rows.append([info.session_id, info.branches, info.events, when])
    if not ctx.json:
        for line in table(["SESSION", "BRANCHES", "EVENTS", "LAST ACTIVITY"], rows):
            ctx.out.line(line)
    return EXIT_OK


async def branches(ctx: Context) -> int:
    """``eventstore branches SESSION``: the branch tree."""
    async with ctx.reader() as store:
        infos = await require_session(store, ctx.args.session)
    if ctx.json:
        for info in infos:
            ctx.out.json(info)
    else:
        for line in branch_tree(infos):
            ctx.out.line(line)
    return EXIT_OK


def _emit(ctx: Context, record: EventRecord, branch_id: str) -> None:
    if ctx.json:
        ctx.out.json(record)
    else:
        ctx.out.line(format_record(record, branch_id, ctx.out.width))


async def show(ctx: Context) -> int:
    """``eventstore show SESSION``: a branch's history, filtered."""
    args = ctx.args
    kinds = {kind for group in args.kinds for kind in group.split(",")} if args.kinds else None
    async with ctx.reader() as store:
        require_branch(await require_session(store, args.session), args.branch)
        async for record in store.iter_events(
            args.session, args.branch, args.from_sequence, to_sequence=args.to_sequence
        ):
            if kinds is None or record.kind in kinds:
                _emit(ctx, record, args.branch)
    return EXIT_OK


async def tail(ctx: Context) -> int:
    """``eventstore tail SESSION [-n N] [-f]``: the last events, then live ones."""
    args = ctx.args
    async with ctx.reader() as store:
        require_branch(await require_session(store, args.session), args.branch)
        head = await store.head(args.session, args.branch)
        if args.lines:
            start = max(head - args.lines + 1, 1)
            for record in await store.read(args.session, args.branch, start, to_sequence=head):
                _emit(ctx, record, args.branch)
        ctx.out.flush()
        if args.follow:
            await _follow(ctx, store, head)
    return EXIT_OK


async def _follow(ctx: Context, store: FileEventStore, head: int) -> None:
    """Print new events until interrupted, or until the reader of a pipe goes away."""
    args = ctx.args

    async def pump() -> None:
        async for record in store.follow(
            args.session, args.branch, after_sequence=head, poll_interval=args.interval
        ):
            _emit(ctx, record, args.branch)

    task = asyncio.ensure_future(pump())
    try:
        # An idle follower writes nothing, so it would never notice ``| head``
        # exiting through EPIPE; look for the closed pipe instead.
        while not ctx.out.reader_gone():
            done, _ = await asyncio.wait({task}, timeout=READER_CHECK)
            if done:
                return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


def _disk_usage(path: Path) -> int:
    total = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


async def stats(ctx: Context) -> int:
    """``eventstore stats``: totals and the largest sessions by bytes on disk."""
    root = ctx.root()
    sizes: list[tuple[int, int, str]] = []
    branch_count = 0
    async with ctx.reader() as store:
        for session_id in await store.list_sessions():
            infos = await store.list_branches(session_id)
            branch_count += len(infos)
            folder = root / session_id
            size = _disk_usage(folder) if folder.is_dir() else 0
            sizes.append((size, _own_events(infos), session_id))
    largest = sorted(sizes, key=lambda row: (-row[0], row[2]))[: ctx.args.top]
    events = sum(row[1] for row in sizes)
    total = sum(row[0] for row in sizes)
    if ctx.json:
        ctx.out.json(
            {
                "root": str(root),
                "sessions": len(sizes),
                "branches": branch_count,
                "events": events,
                "bytes": total,
                "largest": [
                    {"session_id": name, "events": count, "bytes": size}
                    for size, count, name in largest
                ],
            }
        )
        return EXIT_OK
    ctx.out.line(f"root      {root}")
    ctx.out.line(f"sessions  {len(sizes)}")
    ctx.out.line(f"branches  {branch_count}")
    ctx.out.line(f"events    {events}")
    ctx.out.line(f"bytes     {total} ({_human(total)})")
    if largest:
        ctx.out.line()
        rows = [[name, count, size, _human(size)] for size, count, name in largest]
        for line in table(["LARGEST SESSIONS", "EVENTS", "BYTES", "SIZE"], rows):
            ctx.out.line(line)
    return EXIT_OK


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _relation(a: BranchInfo, b: BranchInfo, common: int) -> str:
    if b.parent_branch == a.branch_id:
        return f"{b.branch_id} forked from {a.branch_id} at {b.fork_sequence}"
    if a.parent_branch == b.branch_id:
        return f"{a.branch_id} forked from {b.branch_id} at {a.fork_sequence}"
    if common == 0:
        return "no common history"
    return f"common history up to {common}"


async def diff(ctx: Context) -> int:
    """``eventstore diff SESSION A B``: the divergence point and each side since."""
    args = ctx.args
    async with ctx.reader() as store:
        infos = await require_session(store, args.session)
        info_a, info_b = require_branch(infos, args.a), require_branch(infos, args.b)
        found = await diff_branches(store, args.session, args.a, args.b)
    common, only_a, only_b = found.common_sequence, found.only_a, found.only_b
    if ctx.json:
        ctx.out.json(
            {
                "session_id": args.session,
                "a": info_a,
                "b": info_b,
                "common_sequence": common,
                "only_a": only_a,
                "only_b": only_b,
            }
        )
        return EXIT_OK
    ctx.out.line(f"{args.session}: {args.a} vs {args.b}: {_relation(info_a, info_b, common)}")
    shared = f"sequences 1..{common}" if common else "nothing"
    ctx.out.line(f"shared: {shared}")
    for info, events in ((info_a, only_a), (info_b, only_b)):
        state = "" if branch_state(info) == "open" else f", {branch_state(info)}"
        ctx.out.line()
        ctx.out.line(
            f"{info.branch_id} since {common}: {plural(len(events), 'event')} "
            f"(head {info.head}{state})"
        )
        for record in events:
            ctx.out.line(format_record(record, info.branch_id, ctx.out.width))
    return EXIT_OK
