"""journal.web's SSE streams over a real uvicorn server: resume, end on close, heartbeats."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from journal import EventJournal, open_journal
from journal.web import create_app

from ._web_helpers import frames, running

TOTAL = 400
DISCONNECTS = 100


@pytest.fixture
async def journal_(tmp_path: Path) -> AsyncIterator[EventJournal]:
    async with open_journal(tmp_path, durability="write") as journal:
        yield journal


async def _writer(journal: EventJournal, session: str, total: int, *, close: bool) -> None:
    for n in range(total):
        await journal.record(session, "even" if n % 2 == 0 else "odd", {"n": n})
        if n % 7 == 0:
            await asyncio.sleep(0.001)
    if close:
        await journal.close_branch(session)


async def test_branch_resume_across_random_disconnects(journal_: EventJournal) -> None:
    rng = random.Random(17)
    seen: list[int] = []
    async with running(create_app(journal_)) as url, httpx.AsyncClient(base_url=url) as http:
        writer = asyncio.create_task(_writer(journal_, "s1", TOTAL, close=True))
        reconnects = 0
        ended = False
        while not ended:
            take = rng.randint(1, 5) if reconnects < DISCONNECTS else None
            # Alternate the two resume forms: the header and ?after=.
            last = seen[-1] if seen else None
            headers = {} if last is None or reconnects % 2 else {"Last-Event-ID": str(last)}
            params = {"after": last} if last is not None and reconnects % 2 else {}
            async with http.stream(
                "GET", "/api/sessions/s1/stream", headers=headers, params=params
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                got = 0
                async for frame in frames(response):
                    assert frame.id == str(frame.data["sequence"])
                    assert frame.event == frame.data["kind"]
                    seen.append(frame.data["sequence"])
                    got += 1
                    if take is not None and got == take:
                        break
                else:
                    ended = True
            reconnects += 1
        await writer
    assert reconnects > DISCONNECTS
    assert seen == list(range(1, TOTAL + 1))


async def test_stream_ends_when_the_branch_is_closed(journal_: EventJournal) -> None:
    await journal_.record("s1", "a", {})
    async with running(create_app(journal_)) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/api/sessions/s1/stream") as response:
            stream = frames(response)
            assert (await anext(stream)).id == "1"
            await journal_.record("s1", "b", {})
            assert (await anext(stream)).id == "2"
            await journal_.close_branch("s1")
            rest = [f async for f in stream]
        assert rest == []
        # Resuming a closed branch gives what is left, then ends at once.
        async with http.stream("GET", "/api/sessions/s1/stream?after=1&typed=0") as response:
            left = [f async for f in frames(response)]
        assert [(f.id, f.event) for f in left] == [("2", None)]


async def test_kinds_filter_and_heartbeat(journal_: EventJournal) -> None:
    await journal_.record("s1", "a", {})
    await journal_.record("s1", "b", {})
    app = create_app(journal_, heartbeat=0.05)
    comments: list[str] = []
    async with (
        running(app) as url,
        httpx.AsyncClient(base_url=url) as http,
        http.stream("GET", "/api/sessions/s1/stream?kinds=b") as response,
    ):
        stream = frames(response, comments)
        assert (await anext(stream)).id == "2"
        waiter = asyncio.create_task(anext(stream))
        while len(comments) < 2:
            await asyncio.sleep(0.02)
        await journal_.record("s1", "a", {})
        await journal_.record("s1", "b", {})
        assert (await waiter).id == "4"
    assert set(comments) == {"heartbeat"}


async def test_a_reader_beside_a_writer_follows_live_and_ends_on_close(tmp_path: Path) -> None:
    async with open_journal(tmp_path) as writer:
        await writer.record("s1", "a", {})
        async with open_journal(tmp_path, read_only=True) as reader:
            app = create_app(reader, heartbeat=0.1)
            async with running(app) as url, httpx.AsyncClient(base_url=url) as http:
                async with http.stream("GET", "/api/sessions/s1/stream") as response:
                    stream = frames(response)
                    assert (await anext(stream)).id == "1"
                    await writer.record("s1", "b", {})
                    assert (await asyncio.wait_for(anext(stream), 10)).id == "2"
                    # The reader's hub never hears of the writer's close: the
                    # stream notices it at an idle heartbeat.
                    await writer.close_branch("s1")
                    rest = [f async for f in stream]
                assert rest == []


async def test_feed_resume_with_position_ids(journal_: EventJournal) -> None:
    rng = random.Random(3)
    seen: list[int] = []
    async with running(create_app(journal_)) as url, httpx.AsyncClient(base_url=url) as http:
        writers = [
            asyncio.create_task(_writer(journal_, session, 60, close=False))
            for session in ("a1", "a2", "b1")
        ]
        while len(seen) < 120:
            headers = {"Last-Event-ID": str(seen[-1])} if seen else {}
            async with http.stream(
                "GET", "/api/feed/stream?sessions=a1,a2&kinds=even,odd", headers=headers
            ) as response:
                take = rng.randint(1, 9)
                async for frame in frames(response):
                    assert frame.id == str(frame.data["position"])
                    assert frame.data["session_id"] in {"a1", "a2"}
                    seen.append(frame.data["position"])
                    take -= 1
                    if take == 0 or len(seen) == 120:
                        break
        await asyncio.gather(*writers)
    expected = [r.position for r in await journal_.read_feed(0) if r.session_id != "b1"]
    assert seen == expected


async def test_a_client_that_stops_reading_is_dropped(journal_: EventJournal) -> None:
    app = create_app(journal_, send_timeout=0.2, heartbeat=0.1)
    async with running(app) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        await journal_.record("big", "blob", {})
        writer.write(b"GET /api/sessions/big/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        await reader.readuntil(b"\n\n")
        assert journal_.hub.statistics().subscribers == 1
        # Never read again; fill the socket buffers until the server gives up.
        payload = "x" * 60_000
        try:
            for _ in range(400):
                await journal_.record("big", "blob", {"x": payload})
                if journal_.hub.statistics().subscribers == 0:
                    break
                await asyncio.sleep(0.005)
            for _ in range(200):
                if journal_.hub.statistics().subscribers == 0:
                    break
                await asyncio.sleep(0.05)
            assert journal_.hub.statistics().subscribers == 0
        finally:
            writer.close()
            await writer.wait_closed()
