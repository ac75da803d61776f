"""``JournalCheckpointSaver``'s memory of its own writes: used when sure, never stale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.base import empty_checkpoint

from eventstore import MemoryEventStore
from journal import EventJournal
from journal.integrations.langgraph import JournalCheckpointSaver
from tests.conftest import StoreFactory, _postgres_factory


def _config(thread: str, checkpoint_id: str | None = None) -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


async def _put(saver: JournalCheckpointSaver, thread: str, parent: str | None, x: int) -> str:
    cp = empty_checkpoint()
    cp["channel_values"] = {"x": x}
    cp["channel_versions"] = {"x": 1}
    stored = await saver.aput(_config(thread, parent), cp, {"source": "loop", "step": x}, {})
    return str(stored["configurable"]["checkpoint_id"])


async def _writes(saver: JournalCheckpointSaver, thread: str, checkpoint_id: str) -> list[Any]:
    got = await saver.aget_tuple(_config(thread, checkpoint_id))
    assert got is not None
    return sorted(got.pending_writes)


async def _latest_x(saver: JournalCheckpointSaver, thread: str) -> Any:
    got = await saver.aget_tuple(_config(thread))
    return None if got is None else got.checkpoint["channel_values"]["x"]


async def _another_writer_is_never_missed(
    ours: JournalCheckpointSaver, other: JournalCheckpointSaver
) -> None:
    c1 = await _put(ours, "t", None, 1)
    await ours.aput_writes(_config("t", c1), [("x", "a")], "task-a")
    assert await _writes(ours, "t", c1) == [("task-a", "x", "a")]
    assert await _latest_x(ours, "t") == 1
    assert await _latest_x(ours, "t") == 1  # now from what the saver knows
    # Another writer adds writes to our checkpoint: both reads see them.
    await other.aput_writes(_config("t", c1), [("x", "b")], "task-b")
    assert await _writes(ours, "t", c1) == [("task-a", "x", "a"), ("task-b", "x", "b")]
    got = await ours.aget_tuple(_config("t"))
    assert got is not None and len(got.pending_writes) == 2
    # Our next writes to it keep the other writer's.
    await ours.aput_writes(_config("t", c1), [("x", "c")], "task-c")
    assert await _writes(ours, "t", c1) == [
        ("task-a", "x", "a"),
        ("task-b", "x", "b"),
        ("task-c", "x", "c"),
    ]
    # Another writer's newer checkpoint is the latest, also on a fork.
    c2 = await _put(other, "t", c1, 2)
    assert await _latest_x(ours, "t") == 2
    c3 = await _put(ours, "t", c2, 3)
    assert await _latest_x(ours, "t") == 3
    await _put(other, "t", c2, 4)  # c2 is no longer a head: a fork
    assert await _latest_x(ours, "t") == 4
    # Pruned elsewhere: the hidden checkpoints are gone for us too.
    assert await ours.aget_tuple(_config("t", c3)) is not None
    await other.aprune(["t"])
    assert await ours.aget_tuple(_config("t", c1)) is None
    assert await ours.aget_tuple(_config("t", c3)) is None
    assert await _latest_x(ours, "t") == 4
    # Deleted and written anew elsewhere.
    await other.adelete_thread("t")
    assert await _latest_x(ours, "t") is None
    await _put(other, "t", None, 5)
    assert await _latest_x(ours, "t") == 5
    assert await ours.aget_tuple(_config("t", c2)) is None


async def test_another_saver_of_the_journal_is_never_missed(
    store_factory: StoreFactory,
) -> None:
    async with EventJournal(store_factory()) as journal:
        await _another_writer_is_never_missed(
            JournalCheckpointSaver(journal), JournalCheckpointSaver(journal)
        )


@pytest.fixture
async def postgres_factory(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Stores over one PostgreSQL schema, each with its own connections, as two processes."""
    async for factory in _postgres_factory(request):
        yield factory


async def test_another_process_on_postgres_is_never_missed(
    postgres_factory: StoreFactory,
) -> None:
    async with (
        EventJournal(postgres_factory()) as first,
        EventJournal(postgres_factory()) as second,
    ):
        await _another_writer_is_never_missed(
            JournalCheckpointSaver(first), JournalCheckpointSaver(second)
        )


@pytest.mark.parametrize("same_saver", [True, False])
async def test_writes_before_their_checkpoint_are_read(same_saver: bool) -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        other = saver if same_saver else JournalCheckpointSaver(journal)
        c1 = await _put(saver, "t", None, 1)
        early = "1ef00000-0000-6000-8000-000000000001"
        await other.aput_writes(_config("t", early), [("x", "early")], "task")
        cp = empty_checkpoint()
        cp["id"] = early
        await saver.aput(_config("t", c1), cp, {}, {})
        assert await _writes(saver, "t", early) == [("task", "x", "early")]
        await saver.aput_writes(_config("t", early), [("x", "late")], "task-2")
        assert await _writes(saver, "t", early) == [
            ("task", "x", "early"),
            ("task-2", "x", "late"),
        ]


async def test_a_checkpoint_put_again_keeps_its_writes() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        cp = empty_checkpoint()
        await saver.aput(_config("t"), cp, {}, {})
        await saver.aput_writes(_config("t", cp["id"]), [("x", 1)], "task")
        await saver.aput(_config("t"), cp, {}, {})
        assert await _writes(saver, "t", cp["id"]) == [("task", "x", 1)]
        await saver.aput_writes(_config("t", cp["id"]), [("x", 2)], "task-2")
        assert await _writes(saver, "t", cp["id"]) == [("task", "x", 1), ("task-2", "x", 2)]


async def test_its_own_checkpoints_need_no_lookup() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        saver = JournalCheckpointSaver(journal)
        calls: list[str] = []
        for name in ("get_by_key", "read_last"):
            real = getattr(journal, name)

            async def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
                calls.append(_name)
                return await _real(*args, **kw)

            setattr(journal, name, counted)
        parent = None
        for x in range(5):
            parent = await _put(saver, "t", parent, x)
            await saver.aput_writes(_config("t", parent), [("x", x)], "task")
            await saver.aput_writes(_config("t", parent), [("x", -x)], "task-2")
            assert len(await _writes(saver, "t", parent)) == 2
        assert calls == []
        calls.clear()
        assert await _latest_x(saver, "t") == 4
        calls.clear()
        assert await _latest_x(saver, "t") == 4
        assert calls == []
