"""The feed pump when its last subscriber leaves and a new one joins during its read.

Resumable SSE clients do exactly this (disconnect, reconnect with
``Last-Event-ID``): the pump must not publish the page it was reading as if it
still followed from where it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from eventstore import EventRecord, MemoryEventStore
from journal import EventJournal


class _GatedStore(MemoryEventStore):
    """Holds the pump's own feed reads (no filters) while ``gate`` is armed."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def read_feed(
        self,
        after: int = 0,
        limit: int | None = None,
        *,
        kinds: Iterable[str] | None = None,
        session_ids: Iterable[str] | None = None,
    ) -> list[EventRecord]:
        if self.armed and kinds is None and session_ids is None:
            self.armed = False
            self.entered.set()
            await self.release.wait()
        return await super().read_feed(after, limit, kinds=kinds, session_ids=session_ids)


async def _take(sub: Any, count: int) -> list[int]:
    return [(await asyncio.wait_for(anext(sub), 5)).position for _ in range(count)]


async def test_a_subscriber_joining_while_the_last_one_left_mid_read() -> None:
    store = _GatedStore()
    async with EventJournal(store) as journal:
        for n in range(3):
            await journal.record("s1", "note", {"n": n})
        store.armed = True
        first = journal.subscribe_all(after=0, kinds=["note"])
        assert await _take(first, 3) == [1, 2, 3]
        await asyncio.wait_for(store.entered.wait(), 5)
        await first.aclose()  # the last subscriber leaves mid-read...
        second = journal.subscribe_all(after=0, kinds=["note"])  # ...and a new one joins
        await journal.record("s1", "note", {"n": 3})
        store.release.set()
        assert await _take(second, 4) == [1, 2, 3, 4]
        await journal.record("s1", "note", {"n": 4})
        assert await _take(second, 1) == [5]
        await second.aclose()
