"""The ``eventstore`` parser and entry point: the command groups, one error line, exit codes.

Each group module registers its commands through its ``add_commands(command)``;
a new group plugs in with its import and one line in :data:`GROUPS`.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from eventstore import CorruptLog, EventStoreError, StorageError

from ._consumers import add_commands as consumer_commands
from ._context import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    ROOT_ENV,
    AddCommand,
    CliError,
    Context,
    Handler,
)
from ._lifecycle import add_commands as lifecycle_commands
from ._reading import add_commands as reading_commands
from ._render import Output
from ._serve import add_commands as serve_commands
from ._transfer import add_export, add_import
from ._verify import add_commands as verify_commands
from ._writing import add_commands as writing_commands

__all__ = ("GROUPS", "build_parser", "main")

#: The command groups, in the order ``--help`` lists their commands.
GROUPS: tuple[Callable[[AddCommand], None], ...] = (
    reading_commands,
    verify_commands,
    add_export,
    writing_commands,
    add_import,
    lifecycle_commands,
    serve_commands,
    consumer_commands,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error; the usage is one ``--help`` away.
        command = self.prog.removeprefix(PROG).strip()
        hint = f"{PROG} {command} --help" if command else f"{PROG} --help"
        raise SystemExit(_report(f"{message} (see `{hint}`)", EXIT_USAGE))


def _report(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``eventstore`` command; ``handler`` names each command's."""
    # Options shared by every subcommand, so they may come before or after it;
    # SUPPRESS keeps a value given before the subcommand.
    common = _Parser(add_help=False)
    common.add_argument("--root", default=argparse.SUPPRESS, help="store root directory")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="one JSON value per line"
    )
    parser = _Parser(
        prog=PROG,
        description="Inspect, replay, branch and check an eventjournal file store.",
        epilog="Exit codes: 0 ok, 1 damaged data (or verify found problems), 2 usage error.",
    )
    parser.add_argument("--root", help=f"store root directory (default: ${ROOT_ENV})")
    parser.add_argument("--json", action="store_true", help="one JSON value per line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, text: str, handler: Handler) -> argparse.ArgumentParser:
        found = sub.add_parser(name, parents=[common], help=text, description=text)
        found.set_defaults(handler=handler)
        return found

    for add_commands in GROUPS:
        add_commands(command)
    return parser


def _error_line(exc: BaseException) -> tuple[str, int] | None:
    """The one line and exit code for an error worth no traceback, else None."""
    if isinstance(exc, CliError):
        return str(exc), exc.exit_code
    if isinstance(exc, CorruptLog):
        return f"{exc} (run `{PROG} verify` for a full report)", EXIT_FAILED
    if isinstance(exc, StorageError):
        return str(exc), EXIT_FAILED
    if isinstance(exc, EventStoreError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, OSError):
        user = exc.errno in {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR}
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}", EXIT_USAGE if user else EXIT_FAILED
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code; the console script's entry point.

    Never raises for a user's mistake: it prints one line on stderr and
    returns 2 (``--help`` returns 0).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    follow = bool(getattr(args, "follow", False))
    out = Output(follow=follow)
    handler: Handler = args.handler
    try:
        code: int = asyncio.run(handler(Context(args, out)))
        out.flush()
    except KeyboardInterrupt:
        # Following is only ever ended by Ctrl-C: that is its normal end.
        return EXIT_OK if follow else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep the
        # interpreter from complaining while it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        found = _error_line(exc)
        if found is None:
            raise
        return _report(*found)
    return code
