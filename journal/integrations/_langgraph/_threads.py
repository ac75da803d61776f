"""LangGraph thread ids as eventjournal session ids, one to one and reversible.

A thread id that is already an identifier (``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``)
is the session id, so ``eventstore sessions`` shows it as LangGraph does.
Any other thread id (spaces, slashes, non-ASCII...) becomes ``lg--`` plus the
lowercase base32 of its UTF-8, without padding. A thread id that is an
identifier but starts with ``lg--`` is encoded too, so no two thread ids share
a session. A thread id whose encoded form would pass 128 characters (over 77
bytes of UTF-8) is refused with :class:`InvalidThreadId`.
"""

from __future__ import annotations

import base64
import re

from journal._typed import JournalError

__all__ = ("InvalidThreadId", "session_for", "thread_for")

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PREFIX = "lg--"
_MAX_ENCODED = 128 - len(_PREFIX)


class InvalidThreadId(JournalError, ValueError):
    """A LangGraph thread id that cannot name an eventjournal session."""

    def __init__(self, thread_id: object, reason: str) -> None:
        self.thread_id = thread_id
        self.reason = reason
        super().__init__(f"thread_id {thread_id!r:.200} cannot be stored: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.thread_id, self.reason)


def session_for(thread_id: object) -> str:
    """The session id of ``thread_id`` (its own text if it is a plain identifier).

    :raises InvalidThreadId: for a thread id that is not a non-empty str (an
        int is taken as its decimal text, as LangGraph's savers do), or one too
        long to encode.
    """
    if isinstance(thread_id, int) and not isinstance(thread_id, bool):
        thread_id = str(thread_id)
    if not isinstance(thread_id, str) or not thread_id:
        raise InvalidThreadId(thread_id, "a thread id must be a non-empty str")
    if _PLAIN.fullmatch(thread_id) and not thread_id.startswith(_PREFIX):
        return thread_id
    raw = thread_id.encode("utf-8", "surrogatepass")
    encoded = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    if len(encoded) > _MAX_ENCODED:
        raise InvalidThreadId(
            thread_id,
            f"it is not an identifier, and its encoded form ({len(encoded) + len(_PREFIX)} "
            "characters) is over the 128 a session id may have: use a thread id of at "
            "most 77 UTF-8 bytes, or one matching [A-Za-z0-9][A-Za-z0-9._-]{0,127}",
        )
    return _PREFIX + encoded


def thread_for(session_id: str) -> str:
    """The thread id whose session is ``session_id`` (the inverse of :func:`session_for`).

    :raises ValueError: for an ``lg--`` session id that no thread id encodes to.
    """
    if not session_id.startswith(_PREFIX):
        return session_id
    encoded = session_id[len(_PREFIX) :].upper()
    raw = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    thread_id = raw.decode("utf-8", "surrogatepass")
    if session_for(thread_id) != session_id:
        raise ValueError(f"{session_id!r} is not the session of any thread id")
    return thread_id
