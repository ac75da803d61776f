"""NUL in metadata is refused before any I/O, alike on every backend; in data it is kept.

PostgreSQL reads metadata fields in SQL (the key lookup's index) and its text
cannot hold NUL: before this rule a NUL anywhere in metadata failed there with a
``StorageError`` after the round trip, while the other stores took it.
"""

from __future__ import annotations

from typing import Any

import pytest

from eventstore import EventRecord, InvalidEvent
from tests.conftest import StoreFactory

REFUSED = [
    ({"note": "a\x00b"}, "metadata['note']"),
    ({"key": "k\x00"}, "metadata['key']"),
    ({"a\x00": 1}, "metadata key"),
    ({"deep": [1, {"x": "\x00"}]}, "metadata['deep'][1]['x']"),
]


@pytest.mark.parametrize(("metadata", "where"), REFUSED)
async def test_nul_in_metadata_is_invalid_before_any_io(
    store_factory: StoreFactory, metadata: dict[str, Any], where: str
) -> None:
    async with store_factory() as store:
        with pytest.raises(InvalidEvent) as caught:
            await store.append(EventRecord.new("s", "main", 1, "k", None, metadata=metadata))
        assert where in str(caught.value)
        assert "NUL" in str(caught.value)
        with pytest.raises(InvalidEvent):
            await store.append_batch(
                [
                    EventRecord.new("s", "main", 1, "k"),
                    EventRecord.new("s", "main", 2, "k", None, metadata=metadata),
                ]
            )
        assert await store.head("s") == 0
        assert await store.list_sessions() == []


async def test_nul_in_data_and_escaped_text_in_metadata_are_kept(
    store_factory: StoreFactory,
) -> None:
    async with store_factory() as store:
        # A literal backslash-u0000 is six characters, not a NUL: allowed everywhere.
        record = EventRecord.new(
            "s", "main", 1, "k", {"text": "a\x00b"}, metadata={"key": "\\u0000", "n": "\\u0000"}
        )
        await store.append(record)
        (stored,) = await store.read("s")
        assert stored.data == {"text": "a\x00b"}
        assert stored.metadata == {"key": "\\u0000", "n": "\\u0000"}
        assert await store.get_by_key("s", "\\u0000") == stored
