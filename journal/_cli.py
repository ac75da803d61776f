"""The ``eventstore`` command: inspect, replay, branch and check a file store.

``eventstore --root DIR <command>`` (or ``EVENTSTORE_ROOT``); ``python -m journal``
is the same program. Reading commands open the store ``read_only=True``, so they
work while a writer process holds it; ``fork``, ``merge`` and ``import`` open it
as the writer. ``verify`` never opens a store at all: it reads the files, so it
can report a torn tail without repairing it.

Exit codes: 0 success, 1 damaged data or a failing disk (and ``verify`` finding
problems), 2 a mistake the user can fix (unknown session or branch, bad id,
missing root, locked store, bad import file), 130 interrupted. Every error is
one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

from eventstore import (
    MAIN,
    CorruptLog,
    EventStoreError,
    InvalidIdentifier,
    StorageError,
    check_identifier,
)
from eventstore.file import FileEventStore

from ._cli_render import Output

__all__ = ("CliError", "Context", "build_parser", "main")

PROG = "eventstore"
ROOT_ENV = "EVENTSTORE_ROOT"

#: Exit codes.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""

    exit_code = EXIT_USAGE


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


class Context:
    """What a command needs: its parsed arguments, the root, stores, output."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.args = args
        self.out = out
        self.json: bool = bool(getattr(args, "json", False))

    def root(self, *, create: bool = False) -> Path:
        """The store root from ``--root`` or ``$EVENTSTORE_ROOT``.

        :raises CliError: if neither is set or the directory does not exist
            (unless ``create``, for ``import`` into a new store).
        """
        value = getattr(self.args, "root", None) or os.environ.get(ROOT_ENV)
        if not value:
            raise CliError(f"no store root: pass --root DIR or set {ROOT_ENV}")
        root = Path(value)
        if root.is_dir():
            return root
        if root.exists():
            raise CliError(f"store root {value} is not a directory")
        if not create:
            raise CliError(f"store root {value} does not exist")
        return root

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[FileEventStore]:
        """A read-only store: works beside a writer in another process."""
        async with FileEventStore(self.root(), read_only=True) as store:
            yield store

    @asynccontextmanager
    async def writer(self, *, create: bool = False) -> AsyncIterator[FileEventStore]:
        """The writer store; :class:`~eventstore.StoreLocked` if another process has it."""
        async with FileEventStore(self.root(create=create)) as store:
            yield store


def _sequence(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "number"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds, got {text}")
    return value


def _identifier(field: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return check_identifier(text, field)
        except InvalidIdentifier as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = field
    return parse


_SESSION = _identifier("session_id")
_BRANCH = _identifier("branch_id")


def _add_session(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    parser.add_argument(
        "session", type=_SESSION, metavar="SESSION", nargs="?" if optional else None
    )


def _add_branch(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    parser.add_argument("--branch", "-b", type=_BRANCH, default=MAIN, help="default: main")


def _reading_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    # Imported late, as the handlers are: it imports this module for Context.
    from ._cli_lifecycle import parse_since

    p = command("sessions", "List sessions: branches, events, last activity.")
    p.add_argument("--prefix", metavar="P", help="only ids starting with P")
    p.add_argument(
        "--active-since", type=parse_since, metavar="T", help="active since: 7d ago, or an ISO time"
    )
    p.add_argument("--limit", type=_sequence(0), metavar="N", help="at most N sessions")

    p = command("branches", "Show a session's branch tree: fork points, heads, merges.")
    _add_session(p)

    p = command("show", "Print a branch's history, inherited events included.")
    _add_session(p)
    _add_branch(p)
    p.add_argument("--from", dest="from_sequence", type=_sequence(1), default=1, metavar="N")
    p.add_argument("--to", dest="to_sequence", type=_sequence(0), metavar="M")
    p.add_argument(
        "--kind",
        "-k",
        dest="kinds",
        action="append",
        metavar="K",
        help="only events of kind K (repeat it, or K1,K2)",
    )

    p = command("tail", "Print the last events; with -f, follow a writer until Ctrl-C.")
    _add_session(p)
    _add_branch(p)
    p.add_argument("-n", "--lines", type=_sequence(0), default=10, metavar="N", help="default 10")
    p.add_argument("-f", "--follow", action="store_true", help="wait for new events")
    p.add_argument("--interval", type=_seconds, default=0.1, metavar="S", help="poll every S s")

    p = command("diff", "Where two branches diverge and what each did since.")
    _add_session(p)
    p.add_argument("a", type=_BRANCH, metavar="A")
    p.add_argument("b", type=_BRANCH, metavar="B")

    p = command("stats", "Sessions, events and bytes; the largest sessions.")
    p.add_argument("--top", type=_sequence(0), default=5, metavar="N", help="default 5")

    p = command(
        "verify",
        "Check the files without changing them; exit 1 on any problem. Notes (exit 0) "
        "name what a writer sets aside by itself: .torn files, and a first write a "
        "crash cut off before its manifest entry.",
    )
    _add_session(p, optional=True)

    p = command("export", "Write a branch's history to stdout, one JSON record per line.")
    _add_session(p)
    group = p.add_mutually_exclusive_group()
    _add_branch(group)
    group.add_argument("--all", action="store_true", help="every branch, parents first")


def _writing_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    p = command("fork", "Create branch NEW from another at a sequence (copies nothing).")
    _add_session(p)
    p.add_argument("new_branch", type=_BRANCH, metavar="NEW")
    p.add_argument(
        "--from", dest="from_branch", type=_BRANCH, default=MAIN, metavar="B", help="default main"
    )
    p.add_argument("--at", type=_sequence(0), metavar="N", help="default: the head of B")

    p = command("merge", "Append SOURCE's own events to TARGET and close SOURCE.")
    _add_session(p)
    p.add_argument("source", type=_BRANCH, metavar="SOURCE")
    p.add_argument("target", type=_BRANCH, metavar="TARGET")

    p = command("import", "Load records written by export; creates the root if needed.")
    p.add_argument("file", metavar="FILE", help="JSONL records, or - for stdin")
    p.add_argument("--session", type=_SESSION, metavar="NEW", help="import under this id")

    _lifecycle_commands(command)


def _lifecycle_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    # Imported late, as the handlers are: it imports this module for Context.
    from ._cli_lifecycle import add_commands

    add_commands(command)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``eventstore`` command."""
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

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=text, description=text)

    _reading_commands(command)
    _writing_commands(command)
    return parser


Handler = Callable[[Context], Coroutine[Any, Any, int]]


def _handlers() -> dict[str, Handler]:
    # Imported late: the command modules import this one for Context and CliError.
    from . import _cli_commands as commands
    from ._cli_lifecycle import HANDLERS as lifecycle
    from ._cli_transfer import export, import_
    from ._cli_verify import verify

    return {
        "sessions": commands.sessions,
        "branches": commands.branches,
        "show": commands.show,
        "tail": commands.tail,
        "fork": commands.fork,
        "merge": commands.merge,
        "stats": commands.stats,
        "diff": commands.diff,
        "verify": verify,
        "export": export,
        "import": import_,
        **lifecycle,
    }


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
    handler = _handlers()[args.command]
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
