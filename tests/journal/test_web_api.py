"""journal.web's JSON API over httpx: sessions, branches, events, diff, the token, 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import journal.web
from journal import EventJournal, open_journal
from journal.web import WebError, create_app


@pytest.fixture
async def journal_(tmp_path: Path) -> AsyncIterator[EventJournal]:
    async with open_journal(tmp_path) as journal:
        for n in range(5):
            await journal.record("s1", "step" if n % 2 else "note", {"n": n})
        await journal.create_branch("s1", "alt", fork_sequence=3)
        await journal.record("s1", "step", {"n": "alt"}, branch_id="alt")
        await journal.record("s2", "note", {"n": 0})
        yield journal


def client(journal: EventJournal, **opts: object) -> httpx.AsyncClient:
    app = create_app(journal, **opts)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_exports() -> None:
    public = {n for n in dir(journal.web) if not n.startswith("_") and n != "annotations"}
    public -= {"static"}
    assert set(journal.web.__all__) == {"WebError", "create_app"}
    assert {n for n in public if not isinstance(getattr(journal.web, n), type(journal.web))} == set(
        journal.web.__all__
    )


async def test_sessions_and_paging(journal_: EventJournal) -> None:
    async with client(journal_) as http:
        body = (await http.get("/api/sessions")).json()
        assert [s["session_id"] for s in body["sessions"]] == ["s1", "s2"]
        assert body["sessions"][0]["events"] == 6
        assert "last_activity" in body["sessions"][0]
        page = (await http.get("/api/sessions", params={"limit": 1})).json()
        assert [s["session_id"] for s in page["sessions"]] == ["s1"]
        rest = (await http.get("/api/sessions", params={"after": page["next_after"]})).json()
        assert [s["session_id"] for s in rest["sessions"]] == ["s2"]


async def test_branches_events_and_diff(journal_: EventJournal) -> None:
    async with client(journal_) as http:
        branches = (await http.get("/api/sessions/s1/branches")).json()["branches"]
        alt = next(b for b in branches if b["branch_id"] == "alt")
        assert (alt["parent_branch"], alt["fork_sequence"], alt["head"]) == ("main", 3, 4)
        body = (await http.get("/api/sessions/s1/events", params={"after": 1, "limit": 2})).json()
        assert [e["sequence"] for e in body["events"]] == [2, 3]
        assert (body["head"], body["next_after"], body["closed"]) == (5, 3, False)
        steps = await http.get("/api/sessions/s1/events", params={"kinds": "step"})
        assert [e["sequence"] for e in steps.json()["events"]] == [2, 4]
        on_alt = await http.get("/api/sessions/s1/events", params={"branch": "alt"})
        assert [e["data"]["n"] for e in on_alt.json()["events"]] == [0, 1, 2, "alt"]
        diff = (await http.get("/api/sessions/s1/diff", params={"a": "main", "b": "alt"})).json()
        assert diff["common_sequence"] == 3
        assert [e["sequence"] for e in diff["only_a"]] == [4, 5]
        assert [e["data"]["n"] for e in diff["only_b"]] == ["alt"]


@pytest.mark.parametrize(
    ("path", "params", "headers", "status"),
    [
        ("/api/sessions/nope/branches", {}, {}, 404),
        ("/api/sessions/nope/events", {}, {}, 404),
        ("/api/sessions/s1/events", {"branch": "nope"}, {}, 404),
        ("/api/sessions/s1/stream", {"branch": "nope"}, {}, 404),
        ("/api/sessions/s1/diff", {"a": "main", "b": "nope"}, {}, 404),
        ("/api/sessions/s1/diff", {"a": "main"}, {}, 400),
        ("/api/sessions/bad id!/branches", {}, {}, 400),
        ("/api/sessions/s1/events", {"branch": "a/b"}, {}, 400),
        ("/api/sessions/s1/events", {"after": "-1"}, {}, 400),
        ("/api/sessions/s1/events", {"after": "x"}, {}, 400),
        ("/api/sessions/s1/events", {"limit": "1001"}, {}, 400),
        ("/api/sessions", {"limit": "99999999999999999999999"}, {}, 400),
        ("/api/sessions", {"after": "bad id!"}, {}, 400),
        ("/api/sessions/s1/stream", {}, {"Last-Event-ID": "abc"}, 400),
        ("/api/sessions/s1/stream", {"after": "1.5"}, {}, 400),
        ("/api/sessions/s1/stream", {"typed": "yes"}, {}, 400),
        ("/api/feed/stream", {}, {"Last-Event-ID": "-3"}, 400),
        ("/api/feed/stream", {"sessions": "ok,bad id!"}, {}, 400),
        ("/api/nothing", {}, {}, 404),
    ],
)
async def test_bad_input_is_a_json_4xx(
    journal_: EventJournal, path: str, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    async with client(journal_) as http:
        response = await http.get(path, params=params, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] and error["message"]


async def test_nothing_writes(journal_: EventJournal) -> None:
    async with client(journal_) as http:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = await http.request(method, "/api/sessions/s1/events")
            assert response.status_code == 405
            assert response.json()["error"]["type"]
    assert await journal_.head("s1") == 5


async def test_a_closed_journal_is_a_503(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    await journal.open()
    await journal.close()
    async with client(journal) as http:
        assert (await http.get("/api/sessions")).status_code == 503
        assert (await http.get("/api/feed/stream")).status_code == 503


async def test_token_is_enforced(journal_: EventJournal) -> None:
    async with client(journal_, token="s3cret") as http:
        for path in ("/", "/api/sessions", "/api/sessions/s1/events", "/api/feed/stream"):
            refused = await http.get(path)
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer"
        wrong = await http.get("/api/sessions", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await http.get("/api/sessions", params={"token": "nope"})).status_code == 401
        ok = await http.get("/api/sessions", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert (await http.get("/api/sessions", params={"token": "s3cret"})).status_code == 200
        assert (await http.get("/", params={"token": "s3cret"})).status_code == 200


async def test_viewer_page_is_self_contained(journal_: EventJournal) -> None:
    async with client(journal_) as http:
        page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "EventSource" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page.text


@pytest.mark.parametrize("opts", [{"token": ""}, {"heartbeat": 0}, {"send_timeout": -1.0}])
def test_bad_options(journal_: EventJournal, opts: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        create_app(journal_, **opts)  # type: ignore[arg-type]


def test_web_error_fields() -> None:
    error = WebError(404, "not_found", "unknown session 'x'")
    assert (error.status, error.type, error.message) == (404, "not_found", "unknown session 'x'")
    assert error.to_json() == {"error": {"type": "not_found", "message": "unknown session 'x'"}}
