"""The commands of durable consumers: ``consumers``, ``consumers reset``, ``dead-letters``.

They open the store ``read_only=True`` (a consumer's state is writable from a
reader), so they work beside the writer process and the consumers themselves;
``consumers reset`` refuses while the consumer runs (it holds the lease).
"""

from __future__ import annotations

from eventstore import EventStore, new_ulid

from ._context import EXIT_OK, NAME, AddCommand, CliError, Context, sequence
from ._render import format_time, plural, table

__all__ = ("add_commands",)

#: Records per page when counting a consumer's lag.
_PAGE = 10_000


def add_commands(command: AddCommand) -> None:
    """Add ``consumers`` (and ``consumers reset``) and ``dead-letters``."""
    p = command(
        "consumers",
        "List durable consumers (position, lag, dead letters, lease holder); "
        "`consumers reset NAME --to N` moves one's checkpoint.",
        consumers,
    )
    p.add_argument("action", nargs="?", choices=["reset"], help="reset: move a checkpoint")
    p.add_argument("name", nargs="?", type=NAME, metavar="NAME")
    p.add_argument("--to", type=sequence(0), metavar="N", help="the feed position to resume after")

    p = command("dead-letters", "The records a consumer gave up on, with their errors.", letters)
    p.add_argument("name", type=NAME, metavar="NAME")


async def _lag(store: EventStore, position: int) -> int:
    count = 0
    while page := await store.read_feed(position, _PAGE):
        count += len(page)
        position = page[-1].position
    return count


async def consumers(ctx: Context) -> int:
    """``eventstore consumers [reset NAME --to N]``."""
    if ctx.args.action == "reset":
        return await reset(ctx)
    if ctx.args.name is not None or ctx.args.to is not None:
        raise CliError("NAME and --to go with `consumers reset NAME --to N`")
    async with ctx.reader() as store:
        infos = await store.consumers()
        lags = [await _lag(store, info.position) for info in infos]
    if ctx.json:
        for info, lag in zip(infos, lags, strict=True):
            ctx.out.json(
                {
                    "name": info.name,
                    "position": info.position,
                    "lag": lag,
                    "dead_letters": info.dead_letters,
                    "holder": info.holder,
                }
            )
        return EXIT_OK
    if not infos:
        ctx.out.line("no consumers")
        return EXIT_OK
    rows = [
        [info.name, info.position, lag, info.dead_letters, info.holder or "-"]
        for info, lag in zip(infos, lags, strict=True)
    ]
    for line in table(["NAME", "POSITION", "LAG", "DEAD", "HOLDER"], rows):
        ctx.out.line(line)
    return EXIT_OK


async def reset(ctx: Context) -> int:
    """``eventstore consumers reset NAME --to N``: only while the consumer is stopped."""
    name, to = ctx.args.name, ctx.args.to
    if name is None or to is None:
        raise CliError("usage: consumers reset NAME --to N")
    holder = f"cli-{new_ulid()}"
    async with ctx.reader() as store:
        state = await store.consumer_state(name)
        if not await state.acquire(holder, 30.0):
            raise CliError(f"consumer {name!r} is running (it holds its lease): stop it first")
        try:
            before = await state.position()
            await state.save_position(to)
        finally:
            await state.release(holder)
    if ctx.json:
        ctx.out.json({"name": name, "position": to, "was": before})
    else:
        ctx.out.line(f"consumer {name}: position {before} -> {to}")
    return EXIT_OK


async def letters(ctx: Context) -> int:
    """``eventstore dead-letters NAME``."""
    name: str = ctx.args.name
    async with ctx.reader() as store:
        found = await (await store.consumer_state(name)).dead_letters()
    for letter in found:
        if ctx.json:
            ctx.out.json(letter)
        else:
            where = f"{letter.session_id}/{letter.branch_id}#{letter.sequence}"
            ctx.out.line(
                f"@{letter.position} {where} {letter.event_id} after "
                f"{plural(letter.attempts, 'attempt')} ({format_time(letter.last_failed_at)}): "
                f"{letter.error_type}: {letter.error_message}"
            )
    if not ctx.json:
        ctx.out.line(f"{plural(len(found), 'dead letter')} for consumer {name}")
    return EXIT_OK
