"""The SSE streams: records as ``id:``/``event:``/``data:`` frames, heartbeats while idle.

A stream is an async generator of encoded frames over a journal subscription,
so memory per client is the subscription's bounded buffer plus one frame. It
ends when the subscription ends; a branch closed by another process (which the
journal's hub does not hear of) is noticed at the next idle heartbeat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import suppress

import anyio
import msgspec
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from eventstore import EventRecord
from journal._journal import EventJournal
from stream import Subscription

__all__ = ("EventStream", "branch_frames", "feed_frames", "frame")

_encode = msgspec.json.Encoder().encode
#: What a heartbeat sends: an SSE comment, ignored by every client.
HEARTBEAT = b": heartbeat\n\n"
_IDLE = object()


def frame(event_id: int, record: EventRecord, *, typed: bool = True) -> bytes:
    """One SSE event: ``id:`` ``event_id``, ``event:`` the kind (when ``typed``), the record."""
    # A kind may hold line breaks (only NUL is refused); they would end the field.
    kind = record.kind.replace("\r", " ").replace("\n", " ")
    head = f"id: {event_id}\nevent: {kind}\n" if typed else f"id: {event_id}\n"
    return head.encode() + b"data: " + _encode(record) + b"\n\n"


async def _next(sub: Subscription, idle: float) -> EventRecord | object | None:
    """The next record; ``_IDLE`` after ``idle`` seconds without one; None at the end."""
    # Cancelling a subscription's __anext__ loses nothing (see stream._subscription).
    with anyio.move_on_after(idle):
        try:
            return await sub.__anext__()
        except StopAsyncIteration:
            return None
    return _IDLE


async def branch_frames(
    journal: EventJournal,
    session_id: str,
    branch_id: str,
    after: int,
    kinds: Iterable[str] | None,
    *,
    heartbeat: float,
    typed: bool = True,
) -> AsyncIterator[bytes]:
    """A branch's records after sequence ``after``, then live, until the branch is closed."""
    wanted = None if kinds is None else frozenset(kinds)
    async with journal.subscribe(session_id, branch_id, after, kinds=wanted) as sub:
        last = after
        while True:
            found = await _next(sub, heartbeat)
            if found is None:
                return
            if isinstance(found, EventRecord):
                last = found.sequence
                yield frame(found.sequence, found, typed=typed)
            elif await _closed_elsewhere(journal, session_id, branch_id, last, wanted):
                return
            else:
                yield HEARTBEAT


async def _closed_elsewhere(
    journal: EventJournal,
    session_id: str,
    branch_id: str,
    last: int,
    kinds: frozenset[str] | None,
) -> bool:
    """Whether the branch is closed (or gone) with nothing wanted left after ``last``."""
    found = [b for b in await journal.list_branches(session_id) if b.branch_id == branch_id]
    if not found:
        return True
    if not found[0].closed:
        return False
    rest = await journal.read(session_id, branch_id, last + 1)
    return not any(kinds is None or r.kind in kinds for r in rest)


async def feed_frames(
    journal: EventJournal,
    after: int,
    kinds: Iterable[str] | None,
    session_ids: Iterable[str] | None,
    *,
    heartbeat: float,
    typed: bool = True,
) -> AsyncIterator[bytes]:
    """The global feed after position ``after``, then live; ``id:`` is the position."""
    async with journal.subscribe_all(after=after, kinds=kinds, session_ids=session_ids) as sub:
        while True:
            found = await _next(sub, heartbeat)
            if found is None:
                return
            if isinstance(found, EventRecord):
                yield frame(found.position, found, typed=typed)
            else:
                yield HEARTBEAT


class EventStream(EventSourceResponse):
    """An SSE response that drops a client which stops reading, quietly.

    Every send waits at most ``send_timeout`` seconds; past that the client
    is dropped (it resumes with ``Last-Event-ID``) and the subscription
    closed, without an error in the server's log.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with suppress(SendTimeoutError):
            await super().__call__(scope, receive, send)
