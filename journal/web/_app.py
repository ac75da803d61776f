"""``create_app``: the read-only HTTP API and viewer over one :class:`~journal.EventJournal`.

Routes (all ``GET``; see DESIGN.md "Web"): ``/api/sessions``,
``/api/sessions/{session}/branches``, ``.../events``, ``.../diff``,
``.../stream`` (SSE per branch), ``/api/feed/stream`` (SSE, the global feed)
and the viewer at ``/``. Every refusal is a JSON error with a 4xx status
(503 once the journal is closed); a token, when set, guards every route.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from importlib import resources
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from eventstore import MAIN, BranchInfo, BranchNotFound, EventStoreError, StorageError, StoreClosed
from journal._journal import EventJournal

from ._params import (
    MAX_LIMIT,
    WebError,
    bad_request,
    identifier,
    integer,
    names,
    resume_after,
)
from ._sse import EventStream, branch_frames, feed_frames

__all__ = ("WebError", "create_app")

_encode = msgspec.json.Encoder().encode
#: Records per JSON page when ``limit`` is not given.
DEFAULT_LIMIT = 100


def json_response(
    value: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``value`` as a JSON response (msgspec encodes the records)."""
    return Response(_encode(value), status, headers, media_type="application/json")


def _not_found(message: str) -> WebError:
    return WebError(404, "not_found", message)


class _Api:
    """The endpoints, over one journal."""

    def __init__(self, journal: EventJournal, heartbeat: float, send_timeout: float) -> None:
        self.journal = journal
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        page = resources.files(__package__).joinpath("static/viewer.html")
        self.page = page.read_text(encoding="utf-8")

    async def viewer(self, request: Request) -> Response:
        return HTMLResponse(self.page)

    async def sessions(self, request: Request) -> Response:
        query = request.query_params
        limit = integer(query.get("limit"), "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
        after = query.get("after") or None
        if after is not None:
            after = identifier(after, "after")
        found = await self.journal.sessions(prefix=query.get("prefix"), limit=limit, after=after)
        more = len(found) == limit and limit > 0
        return json_response(
            {"sessions": found, "next_after": found[-1].session_id if more else None}
        )

    async def _branches(self, request: Request) -> tuple[str, list[BranchInfo]]:
        session_id = identifier(request.path_params["session"], "session_id")
        found = await self.journal.list_branches(session_id)
        if not found:
            raise _not_found(f"unknown session {session_id!r}")
        return session_id, found

    async def _branch(self, request: Request, key: str = "branch") -> tuple[str, BranchInfo]:
        session_id, found = await self._branches(request)
        branch_id = identifier(request.query_params.get(key), "branch_id", MAIN)
        for info in found:
            if info.branch_id == branch_id:
                return session_id, info
        raise _not_found(f"unknown branch {branch_id!r} of session {session_id!r}")

    async def branches(self, request: Request) -> Response:
        session_id, found = await self._branches(request)
        return json_response({"session_id": session_id, "branches": found})

    async def events(self, request: Request) -> Response:
        session_id, info = await self._branch(request)
        query = request.query_params
        after = integer(query.get("after"), "after", 0)
        limit = integer(query.get("limit"), "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
        kinds = names(request, "kinds")
        events: list[Any] = []
        scanned = after
        while len(events) < limit and scanned < info.head:
            page = await self.journal.read(session_id, info.branch_id, scanned + 1, MAX_LIMIT)
            if not page:
                break
            for record in page:
                scanned = record.sequence
                if kinds is None or record.kind in kinds:
                    events.append(record)
                    if len(events) == limit:
                        break
        body = {
            "session_id": session_id,
            "branch_id": info.branch_id,
            "head": info.head,
            "closed": info.closed,
            "events": events,
            "next_after": scanned,
        }
        return json_response(body)

    async def diff(self, request: Request) -> Response:
        session_id, _ = await self._branches(request)
        a = identifier(request.query_params.get("a"), "a")
        b = identifier(request.query_params.get("b"), "b")
        return json_response(await self.journal.diff(session_id, a, b))

    async def branch_stream(self, request: Request) -> Response:
        session_id, info = await self._branch(request)
        after = resume_after(request)
        frames = branch_frames(
            self.journal,
            session_id,
            info.branch_id,
            after,
            names(request, "kinds"),
            heartbeat=self.heartbeat,
            typed=_typed(request),
        )
        return self._stream(frames)

    async def feed_stream(self, request: Request) -> Response:
        after = resume_after(request)
        sessions = names(request, "sessions")
        if sessions is not None:
            sessions = [identifier(s, "session_id") for s in sessions]
        frames = feed_frames(
            self.journal,
            after,
            names(request, "kinds"),
            sessions,
            heartbeat=self.heartbeat,
            typed=_typed(request),
        )
        return self._stream(frames)

    def _stream(self, frames: Any) -> Response:
        if self.journal.closed:
            raise StoreClosed("the journal is closed")
        # Heartbeats come from the frames themselves (they also notice a
        # branch closed elsewhere), so sse-starlette's own ping is off.
        return EventStream(frames, ping=0, send_timeout=self.send_timeout)


def _typed(request: Request) -> bool:
    """``?typed=0`` leaves out ``event:``, so a browser's ``onmessage`` sees every record."""
    value = request.query_params.get("typed", "1")
    if value not in {"0", "1"}:
        raise bad_request(f"typed must be 0 or 1, got {value[:40]!r}")
    return value == "1"


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, WebError):
        return json_response(exc.to_json(), exc.status)
    if isinstance(exc, HTTPException):
        kind = "not_found" if exc.status_code == 404 else "http_error"
        found = WebError(exc.status_code, kind, str(exc.detail))
        return json_response(found.to_json(), exc.status_code, exc.headers)
    if isinstance(exc, BranchNotFound):
        return json_response(_not_found(str(exc)).to_json(), 404)
    if isinstance(exc, StoreClosed | StorageError):
        return json_response(WebError(503, "unavailable", str(exc)).to_json(), 503)
    if isinstance(exc, EventStoreError | ValueError | TypeError):
        return json_response(bad_request(str(exc)).to_json(), 400)
    raise exc


class _TokenGate:
    """Every request carries the token: ``Authorization: Bearer T`` or ``?token=T``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(Request(scope)):
            await self.app(scope, receive, send)
            return
        refused = WebError(401, "unauthorized", "a valid token is required")
        response = json_response(refused.to_json(), 401, {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _allowed(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            given = request.query_params.get("token", "")
        return hmac.compare_digest(given.strip().encode(), self.token)


def create_app(
    journal: EventJournal,
    *,
    token: str | None = None,
    heartbeat: float = 15.0,
    send_timeout: float = 30.0,
) -> ASGIApp:
    """The read-only API and viewer over ``journal``, as an ASGI app.

    The caller owns the journal: open it before serving and close it after
    (closing it ends every stream). For serving beside a writer process, open
    the root read-only (``open_journal(root, read_only=True)``): the streams
    follow the writer live.

    :param token: when set, every request must carry it, as
        ``Authorization: Bearer <token>`` or ``?token=<token>``; others get 401.
    :param heartbeat: seconds of idleness after which a stream sends a
        comment (and notices a branch closed by another process).
    :param send_timeout: seconds a client may take to accept one frame
        before it is dropped (it resumes with ``Last-Event-ID``).
    :raises ValueError: for an empty token or a non-positive interval.
    """
    if token is not None and not token:
        raise ValueError("token must be a non-empty string (or None for no token)")
    if not heartbeat > 0 or not send_timeout > 0:
        raise ValueError(f"heartbeat and send_timeout must be > 0, got {heartbeat}, {send_timeout}")
    api = _Api(journal, heartbeat, send_timeout)
    session = "/api/sessions/{session}"
    routes = [
        Route("/", api.viewer),
        Route("/api/sessions", api.sessions),
        Route(f"{session}/branches", api.branches),
        Route(f"{session}/events", api.events),
        Route(f"{session}/diff", api.diff),
        Route(f"{session}/stream", api.branch_stream),
        Route("/api/feed/stream", api.feed_stream),
    ]
    handlers = dict.fromkeys(
        (WebError, HTTPException, EventStoreError, ValueError, TypeError), _error
    )
    app: ASGIApp = Starlette(routes=routes, exception_handlers=handlers)
    return app if token is None else _TokenGate(app, token)
