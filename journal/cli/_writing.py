"""The writing commands: ``fork`` and ``merge``, through the writer store."""

from __future__ import annotations

from eventstore import MAIN

from ._context import (
    BRANCH,
    EXIT_OK,
    AddCommand,
    Context,
    add_session,
    require_session,
    sequence,
)

__all__ = ("add_commands", "fork", "merge")


def add_commands(command: AddCommand) -> None:
    """Register the writing commands."""
    p = command("fork", "Create branch NEW from another at a sequence (copies nothing).", fork)
    add_session(p)
    p.add_argument("new_branch", type=BRANCH, metavar="NEW")
    p.add_argument(
        "--from", dest="from_branch", type=BRANCH, default=MAIN, metavar="B", help="default main"
    )
    p.add_argument("--at", type=sequence(0), metavar="N", help="default: the head of B")

    p = command("merge", "Append SOURCE's own events to TARGET and close SOURCE.", merge)
    add_session(p)
    p.add_argument("source", type=BRANCH, metavar="SOURCE")
    p.add_argument("target", type=BRANCH, metavar="TARGET")


async def fork(ctx: Context) -> int:
    """``eventstore fork SESSION NEW --from B --at N``."""
    args = ctx.args
    async with ctx.writer() as store:
        await require_session(store, args.session)
        info = await store.create_branch(
            args.session, args.new_branch, from_branch=args.from_branch, fork_sequence=args.at
        )
    ctx.result(
        info,
        f"created {info.session_id}/{info.branch_id} from {info.parent_branch} "
        f"at sequence {info.fork_sequence}",
    )
    return EXIT_OK


async def merge(ctx: Context) -> int:
    """``eventstore merge SESSION SOURCE TARGET``."""
    args = ctx.args
    async with ctx.writer() as store:
        await require_session(store, args.session)
        result = await store.merge_branch(args.session, args.source, args.target)
    ctx.result(
        result,
        f"merged {result.merged_events} events of {args.session}/{result.source_branch} "
        f"into {result.target_branch} (head {result.target_head}); "
        f"{result.source_branch} is now closed",
    )
    return EXIT_OK
