"""Helpers shared by the hub, subscription and journal tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from eventstore import MAIN, EventRecord

#: A guard against hangs, far above any expected run time; tests never wait on it.
GUARD_SECONDS = 60


def ev(
    session: str, seq: int, kind: str = "message", branch: str = MAIN, **data: Any
) -> EventRecord:
    return EventRecord.new(session, branch, seq, kind, data or {"n": seq})


async def take(events: AsyncIterator[EventRecord], count: int) -> list[EventRecord]:
    """The next ``count`` events of an iterator, failing instead of hanging."""
    out: list[EventRecord] = []
    async with asyncio.timeout(GUARD_SECONDS):
        while len(out) < count:
            out.append(await anext(events))
    return out


async def drain(events: AsyncIterator[EventRecord]) -> list[EventRecord]:
    """Everything an iterator still yields until it ends."""
    async with asyncio.timeout(GUARD_SECONDS):
        return [event async for event in events]


def seqs(records: list[EventRecord]) -> list[int]:
    return [r.sequence for r in records]
