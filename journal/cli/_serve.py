"""The ``serve`` command: the web viewer and SSE API over a store root (extra ``web``)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from importlib import import_module
from types import ModuleType

from journal._journal import open_journal

from ._context import EXIT_OK, AddCommand, CliError, Context, sequence

__all__ = ("TOKEN_ENV", "add_commands", "is_loopback")

TOKEN_ENV = "EVENTSTORE_TOKEN"


def add_commands(command: AddCommand) -> None:
    """Add ``serve`` to the ``eventstore`` parser."""
    p = command("serve", "Serve the live web viewer and SSE API (read-only) over the root.", serve)
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=sequence(0), default=8765, help="default: 8765")
    p.add_argument("--token", help=f"require this token on every request (default: ${TOKEN_ENV})")
    p.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback host without a token"
    )
    # Like ``tail --follow``, serving is only ever ended by Ctrl-C: exit code 0.
    p.set_defaults(follow=True)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only ever reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a[4][0]).is_loopback for a in found)


def _web_modules() -> tuple[ModuleType, ModuleType]:
    """``journal.web`` and ``uvicorn``, imported on use: they need the ``web`` extra.

    :raises CliError: if the extra is not installed.
    """
    try:
        return import_module("journal.web"), import_module("uvicorn")
    except ImportError as exc:
        raise CliError(
            f"serve needs the web extra: pip install 'eventjournal[web]' ({exc})"
        ) from None


async def serve(ctx: Context) -> int:
    """``eventstore serve [--host H] [--port P] [--token T] [--insecure]``."""
    args = ctx.args
    token: str | None = args.token or os.environ.get(TOKEN_ENV) or None
    if token is None and not args.insecure and not is_loopback(args.host):
        raise CliError(
            f"refusing to serve on {args.host} without a token: pass --token "
            f"(or set {TOKEN_ENV}), or --insecure to allow anyone who can reach it"
        )
    root = ctx.root()
    web, uvicorn = _web_modules()
    async with open_journal(root, read_only=True) as journal:
        app = web.create_app(journal, token=token)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
        server = uvicorn.Server(config)
        where = f"http://{args.host}:{args.port}/"
        guarded = " (token required)" if token else ""
        sys.stderr.write(f"serving {root} read-only at {where}{guarded}\n")
        await server.serve()
    return EXIT_OK
