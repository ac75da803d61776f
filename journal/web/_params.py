"""Query and header parsing for the web API: every bad value becomes a :class:`WebError`."""

from __future__ import annotations

from starlette.requests import Request

from eventstore import InvalidIdentifier, check_identifier

__all__ = ("MAX_LIMIT", "WebError", "identifier", "integer", "names", "resume_after")

#: The largest page a JSON endpoint returns (``limit`` above it is a 400).
MAX_LIMIT = 1000


class WebError(Exception):
    """A request the API refuses: answered as ``{"error": {"type", "message"}}``.

    :ivar status: the HTTP status (4xx).
    :ivar type: a short machine-readable name (``bad_request``, ``not_found``...).
    :ivar message: what was wrong, for people.
    """

    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message

    def to_json(self) -> dict[str, dict[str, str]]:
        """The response body."""
        return {"error": {"type": self.type, "message": self.message}}


def bad_request(message: str) -> WebError:
    """A 400 ``bad_request``."""
    return WebError(400, "bad_request", message)


def integer(text: str | None, name: str, default: int, *, maximum: int | None = None) -> int:
    """``text`` as an int ``>= 0`` (``default`` when absent).

    :raises WebError: 400 for anything else, or a value above ``maximum``.
    """
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise bad_request(f"{name} must be an integer >= 0, got {text[:40]!r}")
    value = int(text)
    if maximum is not None and value > maximum:
        raise bad_request(f"{name} must be at most {maximum}, got {value}")
    return value


def identifier(text: str | None, field: str, default: str | None = None) -> str:
    """A valid session or branch id (``default`` when absent).

    :raises WebError: 400 for a bad id, or a missing one without a default.
    """
    if text is None or text == "":
        if default is None:
            raise bad_request(f"{field} is required")
        return default
    try:
        return check_identifier(text, field)
    except InvalidIdentifier as exc:
        raise bad_request(str(exc)) from None


def names(request: Request, key: str) -> list[str] | None:
    """A comma-separated (or repeated) query list: ``?kinds=a,b&kinds=c``; None when absent."""
    found = [part for value in request.query_params.getlist(key) for part in value.split(",")]
    found = [part.strip() for part in found if part.strip()]
    return found or None


def resume_after(request: Request) -> int:
    """Where a stream resumes: the ``Last-Event-ID`` header, else ``?after=``, else 0.

    :raises WebError: 400 if the one given is not an integer ``>= 0``.
    """
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        return integer(header.strip(), "Last-Event-ID", 0)
    return integer(request.query_params.get("after"), "after", 0)
