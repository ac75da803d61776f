"""Deterministic eventjournal session ids for a framework's free-form names.

A framework names its sessions (and apps, users) with any string; an
eventjournal identifier is ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``. A name that is
already a safe component is kept as it is, so ``eventstore sessions`` stays
readable; anything else becomes ``_`` plus a hash of it. Raw components never
start with ``_``, so the two forms cannot collide.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ("component", "join")

_RAW = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")


def component(name: str) -> str:
    """The identifier-safe form of ``name``: itself, or ``_`` and 24 hex digits."""
    if _RAW.fullmatch(name):
        return name
    return "_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def join(prefix: str, *names: str) -> str:
    """``prefix`` and the safe form of each name, joined by dots (at most 3 names fit)."""
    return ".".join((prefix, *map(component, names)))
