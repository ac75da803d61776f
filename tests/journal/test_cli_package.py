"""The CLI package: every command registered with its handler, in the order ``--help`` shows."""

from __future__ import annotations

import argparse

from journal.cli import build_parser

COMMANDS = [
    "sessions",
    "branches",
    "show",
    "tail",
    "diff",
    "stats",
    "verify",
    "export",
    "fork",
    "merge",
    "import",
    "close",
    "delete",
    "expire",
    "serve",
    "consumers",
    "dead-letters",
]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_has_its_handler_in_help_order() -> None:
    found = _subcommands(build_parser())
    assert list(found) == COMMANDS
    for name, parser in found.items():
        handler = parser.get_default("handler")
        assert callable(handler), name
        assert handler.__module__.startswith("journal.cli._"), name
