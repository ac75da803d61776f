"""What every command shares: :class:`Context`, :class:`CliError`, exit codes, argument types.

A command group module (``_reading``, ``_writing``, ``_transfer``, ``_verify``)
owns its parsers and handlers and registers them through an :data:`AddCommand`
given to its ``add_commands``; :mod:`journal.cli._main` lists the groups.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventstore import (
    MAIN,
    BranchInfo,
    BranchNotFound,
    EventStore,
    InvalidIdentifier,
    check_identifier,
)
from eventstore.file import FileEventStore

from ._render import Output

__all__ = (
    "parse_age",
    "parse_since",
    "BRANCH",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "NAME",
    "PROG",
    "ROOT_ENV",
    "SESSION",
    "AddCommand",
    "CliError",
    "Context",
    "Handler",
    "add_branch",
    "add_session",
    "require_branch",
    "require_session",
    "seconds",
    "sequence",
    "unknown_session",
)

PROG = "eventstore"
ROOT_ENV = "EVENTSTORE_ROOT"

#: Exit codes.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """A mistake the user can fix: printed as one line, exit code 2."""

    exit_code = EXIT_USAGE


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

    def result(self, value: Any, text: str) -> None:
        """Print a command's result: ``value`` as one JSON line under ``--json``, else ``text``."""
        if self.json:
            self.out.json(value)
        else:
            self.out.line(text)

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


#: A command's handler: runs it, returns the exit code.
Handler = Callable[[Context], Coroutine[Any, Any, int]]
#: ``command(name, help, handler)``: a new subcommand's parser, its handler bound.
AddCommand = Callable[[str, str, Handler], argparse.ArgumentParser]


def unknown_session(session_id: str) -> CliError:
    """The error for a session the store does not have."""
    return CliError(f"unknown session {session_id!r} (see `{PROG} sessions`)")


async def require_session(store: EventStore, session_id: str) -> list[BranchInfo]:
    """The session's branches.

    :raises CliError: if the store has no such session.
    """
    found = await store.list_branches(session_id)
    if not found:
        raise unknown_session(session_id)
    return found


def require_branch(found: Sequence[BranchInfo], branch_id: str) -> BranchInfo:
    """The named branch among ``found``.

    :raises BranchNotFound: if it is not there.
    """
    for info in found:
        if info.branch_id == branch_id:
            return info
    raise BranchNotFound(found[0].session_id, branch_id)


def sequence(minimum: int) -> Callable[[str], int]:
    """An argument type: an integer of at least ``minimum``."""

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


def seconds(text: str) -> float:
    """An argument type: seconds, more than 0 and at most an hour.

    :raises argparse.ArgumentTypeError: for anything else.
    """
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


#: Argument types: a valid session id, a valid branch id, a valid consumer name.
SESSION = _identifier("session_id")
BRANCH = _identifier("branch_id")
NAME = _identifier("name")


def add_session(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """The positional ``SESSION`` argument."""
    parser.add_argument("session", type=SESSION, metavar="SESSION", nargs="?" if optional else None)


def add_branch(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    """The ``--branch``/``-b`` option, ``main`` by default."""
    parser.add_argument("--branch", "-b", type=BRANCH, default=MAIN, help="default: main")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE = re.compile(r"(\d+)([smhdw])")


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``1w2d``, ``90s``: a duration (units s, m, h, d, w).

    :raises argparse.ArgumentTypeError: for anything else.
    """
    parts = _AGE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"expected a duration like 30d, 12h or 1w2d, got {text!r}")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def parse_since(text: str) -> datetime:
    """A moment: a duration ago (``7d``) or an ISO 8601 time (UTC if it names no zone).

    :raises argparse.ArgumentTypeError: for anything else.
    """
    try:
        return datetime.now(UTC) - parse_age(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration (7d) or an ISO time (2026-01-31T12:00Z), got {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


parse_age.__name__ = "duration"
parse_since.__name__ = "time"
