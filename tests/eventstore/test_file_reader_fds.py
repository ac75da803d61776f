"""A read-only file store gives back every descriptor it opened when it closes."""

from __future__ import annotations

import os
from pathlib import Path

from eventstore import EventRecord, FileEventStore


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_read_only_stores_close_their_feed_files(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, durability="write") as writer:
        await writer.append(EventRecord.new("s", "main", 1, "k"))
        before = _open_fds()
        for _ in range(20):
            async with FileEventStore(tmp_path, read_only=True) as reader:
                assert await reader.read_feed() != []
        # feed.idx and feed.streams were left open by every reader (2 per store).
        assert _open_fds() <= before + 2
