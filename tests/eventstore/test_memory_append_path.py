"""Issue 16: ``MemoryEventStore.append`` inlines the common case; its contract is the base's."""

from __future__ import annotations

import pytest

from eventstore import MAIN, EventRecord, EventStore, InvalidEvent, MemoryEventStore, StoreClosed


class HookedStore(MemoryEventStore):
    """A subclass that hooks ``_append``, as tests' raced stores do."""

    def __init__(self) -> None:
        super().__init__()
        self.hooked: list[int] = []

    async def _append(self, event: EventRecord) -> EventRecord:
        self.hooked.append(event.sequence)
        return await super()._append(event)


async def test_a_subclass_hooking_append_sees_every_single_append() -> None:
    assert HookedStore.append is EventStore.append
    async with HookedStore() as store:
        for sequence in (1, 2, 3):
            await store.append(EventRecord.new("s", MAIN, sequence, "message"))
        assert store.hooked == [1, 2, 3]


async def test_the_inline_path_stores_a_private_copy_at_the_next_position() -> None:
    async with MemoryEventStore() as store:
        first = await store.append(EventRecord.new("s", MAIN, 1, "message", {"n": [1]}))
        data = {"text": "flat", "n": 2}
        second = EventRecord.new("s", MAIN, 2, "message", data, metadata={"m": {"x": 1}})
        stored = await store.append(second)
        assert (first.position, stored.position) == (1, 2)
        data["text"] = "changed"
        second.metadata["m"]["x"] = 2
        first.data["n"].append(2)
        got = await store.read("s")
        assert [r.data for r in got] == [{"n": [1]}, {"text": "flat", "n": 2}]
        assert got[1].metadata == {"m": {"x": 1}} and got[1].position == 2
        assert [r.position for r in await store.read_feed(0)] == [1, 2]


async def test_the_inline_path_keeps_every_check() -> None:
    store = MemoryEventStore()  # not opened: append opens it
    with pytest.raises(InvalidEvent):
        await store.append("not a record")  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent):
        await store.append(EventRecord("s", MAIN, 1, "message", {"x": float("nan")}))
    with pytest.raises(InvalidEvent):
        await store.append(EventRecord("s", MAIN, 1, "message", {1: "int key"}))
    assert (await store.append(EventRecord("s", MAIN, 1, "message", 7))).data == 7
    assert (await store.read("s"))[0].data == 7
    await store.close()
    with pytest.raises(StoreClosed):
        await store.append(EventRecord.new("s", MAIN, 2, "message"))
