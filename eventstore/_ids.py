"""Identifier validation: one rule for session and branch ids, checked before any I/O."""

from __future__ import annotations

import re

from ._errors import InvalidIdentifier

__all__ = ("MAIN", "check_identifier", "is_valid_identifier")

#: The branch every session has implicitly.
MAIN = "main"

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_valid_identifier(value: object) -> bool:
    """Tell whether ``value`` may name a session or a branch (and so a file)."""
    return type(value) is str and _IDENTIFIER.fullmatch(value) is not None and ".." not in value


def check_identifier(value: object, field: str = "session_id") -> str:
    """Return ``value`` if it is a valid identifier.

    :raises InvalidIdentifier: otherwise (wrong type, characters, length, or ``..``).
    """
    if not is_valid_identifier(value):
        raise InvalidIdentifier(field, value)
    return value  # type: ignore[return-value]
