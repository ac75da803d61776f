"""A real uvicorn server in the test's event loop, and a small SSE reader over httpx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import uvicorn
from starlette.types import ASGIApp


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    # The test's own signals stay with pytest.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, 10)


class Frame(msgspec.Struct):
    """One SSE event as a client sees it."""

    id: str | None
    event: str | None
    data: Any


async def frames(
    response: httpx.Response, comments: list[str] | None = None
) -> AsyncIterator[Frame]:
    """The SSE events of a streaming response; comments go to ``comments``."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield Frame(
                    fields.get("id"), fields.get("event"), msgspec.json.decode(fields["data"])
                )
            fields = {}
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
