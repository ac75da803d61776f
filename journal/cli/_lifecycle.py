"""The commands of a session's lifecycle: ``close``, ``delete``, ``expire``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from eventstore import MAIN

from ._context import BRANCH, EXIT_OK, SESSION, AddCommand, CliError, Context, parse_age
from ._render import format_time, plural

__all__ = ("add_commands",)


def add_commands(command: AddCommand) -> None:
    """Add ``close``, ``delete`` and ``expire`` to the ``eventstore`` parser."""
    p = command("close", "Close a branch (default main): no more events; followers end.", close)
    p.add_argument("session", type=SESSION, metavar="SESSION")
    p.add_argument("--branch", "-b", type=BRANCH, default=MAIN, help="default: main")

    p = command("delete", "Erase a session: every branch, event and trace of it on disk.", delete)
    p.add_argument("session", type=SESSION, metavar="SESSION")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask (needed off a terminal)")

    p = command("expire", "Delete every session idle for longer than a duration.", expire)
    p.add_argument(
        "--idle-for", type=parse_age, required=True, metavar="AGE", help="e.g. 30d, 12h, 1w"
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")


async def close(ctx: Context) -> int:
    """``eventstore close SESSION [-b BRANCH]``."""
    async with ctx.writer() as store:
        info = await store.close_branch(ctx.args.session, ctx.args.branch)
    if ctx.json:
        ctx.out.json(info)
    else:
        ctx.out.line(f"closed {info.session_id}/{info.branch_id} at sequence {info.head}")
    return EXIT_OK


async def delete(ctx: Context) -> int:
    """``eventstore delete SESSION [--yes]``: asks on a terminal, refuses elsewhere."""
    session_id: str = ctx.args.session
    async with ctx.writer() as store:
        found = await store.sessions(prefix=session_id, limit=1)
        info = found[0] if found and found[0].session_id == session_id else None
        if info is not None and not ctx.args.yes:
            _confirm(
                f"delete session {session_id!r}: {plural(info.branches, 'branch', 'branches')}, "
                f"{plural(info.events, 'event')}? This cannot be undone [y/N] "
            )
        deleted = await store.delete_session(session_id)
    if ctx.json:
        ctx.out.json({"session_id": session_id, "deleted": deleted})
    elif deleted:
        ctx.out.line(f"deleted {session_id}")
    else:
        ctx.out.line(f"no session {session_id}: nothing to delete")
    return EXIT_OK


def _confirm(question: str) -> None:
    """Ask on the terminal.

    :raises CliError: off a terminal (say ``--yes``), or if the answer is not yes.
    """
    if not sys.stdin.isatty():
        raise CliError("refusing to delete without --yes: stdin is not a terminal")
    sys.stderr.write(question)
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CliError("not deleted")


async def expire(ctx: Context) -> int:
    """``eventstore expire --idle-for AGE [--dry-run]``."""
    idle_for: timedelta = ctx.args.idle_for
    if ctx.args.dry_run:
        async with ctx.reader() as store:
            idle = await store.sessions(active_before=datetime.now(UTC) - idle_for)
        for info in idle:
            if ctx.json:
                ctx.out.json({"session_id": info.session_id, "last_activity": info.last_activity})
            else:
                since = format_time(info.last_activity)
                ctx.out.line(f"would delete {info.session_id} (idle since {since})")
        if not ctx.json:
            ctx.out.line(f"{plural(len(idle), 'session')} idle for {idle_for} or longer")
        return EXIT_OK
    async with ctx.writer() as store:
        deleted = await store.expire(idle_for=idle_for)
    for session_id in deleted:
        if ctx.json:
            ctx.out.json({"session_id": session_id, "deleted": True})
        else:
            ctx.out.line(f"deleted {session_id}")
    if not ctx.json:
        ctx.out.line(f"{plural(len(deleted), 'session')} expired")
    return EXIT_OK
