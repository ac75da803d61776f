"""Identifier validation: one rule for session and branch ids, checked before any I/O."""

from __future__ import annotations

import re

from ._errors import InvalidIdentifier

__all__ = ("MAIN", "check_identifier", "is_valid_identifier")

#: The branch every session has implicitly.
MAIN = "main"

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


#: Identifiers already seen valid; a hit skips the regex (two per event otherwise).
_seen_valid: set[str] = set()
_SEEN_MAX = 4096


def is_valid_identifier(value: object) -> bool:
    """Tell whether ``value`` may name a session or a branch (and so a file)."""
    if type(value) is str and value in _seen_valid:
        return True
    valid = type(value) is str and _IDENTIFIER.fullmatch(value) is not None and ".." not in value
    if valid:
        if len(_seen_valid) >= _SEEN_MAX:
            _seen_valid.clear()
        _seen_valid.add(value)  # type: ignore[arg-type]
    return valid


def check_identifier(value: object, field: str = "session_id") -> str:
    """Return ``value`` if it is a valid identifier.

    :raises InvalidIdentifier: otherwise (wrong type, characters, length, or ``..``).
    """
    if not is_valid_identifier(value):
        raise InvalidIdentifier(field, value)
    return value  # type: ignore[return-value]
