"""Hypothesis strategies for identifiers, JSON payloads and records.

Every value they generate is storable as it is (``identifiers``, ``json_values``,
``event_records``) or is rejected before any I/O (``hostile_identifiers``), so a
property can assert exactly one of the two outcomes.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from .._ids import MAIN, is_valid_identifier
from .._records import EventRecord

__all__ = (
    "event_ids",
    "event_kinds",
    "event_records",
    "hostile_identifiers",
    "identifiers",
    "json_values",
    "metadata_values",
    "timestamps",
)

_ALNUM = string.ascii_letters + string.digits
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: The JSON integer range every backend stores exactly (a Postgres ``bigint``).
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# Lone surrogates cannot be encoded as UTF-8, so no JSON document can hold them.
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
# Metadata is read in SQL by PostgreSQL, whose text refuses NUL: no store takes it there.
_META_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
)

_COMMON_IDS = ("main", "s1", "session-1", "agent.run_7", "01HZY3V5QK8N4T2M6XW9RB0C1D")

#: Names that look plausible to a caller and must still be refused.
_HOSTILE = (
    "",
    ".",
    "..",
    "../etc/passwd",
    "a/../b",
    "..\\windows",
    "a..b",
    "a/b",
    "/abs",
    "a\\b",
    ".hidden",
    "-rf",
    "_private",
    "a\x00b",
    "\x00",
    "a b",
    " lead",
    "trail\n",
    "tab\t",
    "é",
    "ﬁle",
    "\uff21\uff22",  # fullwidth "AB"
    "right\u202eleft",
    "a:b",
    "a*b",
    "~user",
    "$HOME",
    "%2e%2e",
    "x" * 129,
    "x" * 300,
)


def _no_double_dot(value: str) -> str:
    # Mapping instead of filtering keeps generation rejection-free; one pass is
    # enough because every replaced pair ends in "0".
    return value.replace("..", ".0")


def identifiers(*, max_size: int = 128) -> st.SearchStrategy[str]:
    """Valid session and branch ids: ``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$``, no ``..``.

    :param max_size: the longest id to generate (1-128); short ids make
        readable failing examples.
    """
    if not 1 <= max_size <= 128:
        raise ValueError(f"max_size must be within 1..128, got {max_size}")
    tail = st.text(_ALNUM + "._-", max_size=max_size - 1)
    generated = st.builds(
        lambda head, rest: _no_double_dot(head + rest), st.sampled_from(_ALNUM), tail
    )
    common = st.sampled_from([i for i in _COMMON_IDS if len(i) <= max_size])
    return st.one_of(common, generated)


def hostile_identifiers() -> st.SearchStrategy[str]:
    """Strings that must raise :class:`~eventstore.InvalidIdentifier` before any I/O.

    Path traversal, separators, NUL and control characters, non-ASCII look-alikes,
    leading ``.``/``-``/``_``, the empty string and names past 128 characters.
    """
    valid = identifiers(max_size=20)
    spliced = st.builds(
        lambda ok, bad, at: ok[: at % (len(ok) + 1)] + bad + ok[at % (len(ok) + 1) :],
        valid,
        st.sampled_from(["/", "\\", "\x00", "..", " ", "\n", ":", "é", "\u2024", "?"]),
        st.integers(0, 20),
    )
    prefixed = st.builds(lambda p, ok: p + ok, st.sampled_from([".", "-", "_", "/", "../"]), valid)
    too_long = st.text(_ALNUM, min_size=129, max_size=300).map(lambda s: "a" + s[1:])
    anything = st.text(max_size=12)
    return st.one_of(st.sampled_from(_HOSTILE), spliced, prefixed, too_long, anything).filter(
        lambda s: not is_valid_identifier(s)
    )


def json_values(*, max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """JSON values that survive a msgspec round trip unchanged.

    No NaN or infinities, string keys only, integers within ``-2**63 .. 2**63-1``,
    text without lone surrogates.
    """
    return _json_values(_TEXT, max_leaves)


def _json_values(text: st.SearchStrategy[str], max_leaves: int) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(_INT_MIN, _INT_MAX),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(text, inner, max_size=5)
        ),
        max_leaves=max_leaves,
    )


def metadata_values(*, max_leaves: int = 8) -> st.SearchStrategy[dict[str, Any]]:
    """``metadata`` dicts: string keys, JSON values; no NUL in any string (stores refuse it)."""
    return st.dictionaries(_META_TEXT, _json_values(_META_TEXT, max_leaves), max_size=4)


def event_kinds() -> st.SearchStrategy[str]:
    """Non-empty ``kind`` strings, mostly the agent-like ones."""
    common = st.sampled_from(["message", "tool_call", "tool_result", "note", "error"])
    # PostgreSQL's text refuses NUL, so every store refuses it in a kind.
    return st.one_of(common, _TEXT.map(lambda s: s.replace("\x00", "")).filter(bool))


def event_ids() -> st.SearchStrategy[str]:
    """ULID-shaped event ids (26 Crockford base-32 characters, time-sortable)."""
    return st.text(_CROCKFORD, min_size=26, max_size=26).map(lambda s: "0" + s[1:])


def timestamps() -> st.SearchStrategy[datetime]:
    """Aware UTC datetimes across the whole range the JSON codec supports."""
    return st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(UTC),
    )


def event_records(
    *,
    session_ids: st.SearchStrategy[str] | None = None,
    branch_ids: st.SearchStrategy[str] | None = None,
    sequences: st.SearchStrategy[int] | None = None,
    kinds: st.SearchStrategy[str] | None = None,
    data: st.SearchStrategy[Any] | None = None,
    metadata: st.SearchStrategy[dict[str, Any]] | None = None,
) -> st.SearchStrategy[EventRecord]:
    """Valid :class:`~eventstore.EventRecord` values; every argument overrides one field."""
    return st.builds(
        EventRecord,
        session_id=identifiers() if session_ids is None else session_ids,
        branch_id=st.one_of(st.just(MAIN), identifiers()) if branch_ids is None else branch_ids,
        sequence=st.integers(1, _INT_MAX) if sequences is None else sequences,
        kind=event_kinds() if kinds is None else kinds,
        data=json_values() if data is None else data,
        metadata=metadata_values() if metadata is None else metadata,
        event_id=event_ids(),
        recorded_at=timestamps(),
    )
