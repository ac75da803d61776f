"""Damaged lines in a branch file are reported where they are, never read as history.

Issue 11, D4 (reads checked only the first and last sequence of each chunk,
and the head was believed from the last line alone) and D13 (the line number
of the damage).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from eventstore import CorruptLog, EventRecord, FileEventStore
from eventstore.file._batch import encode_batch
from eventstore.file._index import SparseIndex
from eventstore.file._writer import FileOps

from ._file_helpers import ev, lines_of


async def _write(root: Path, count: int, session: str = "s1", branch: str = "main") -> Path:
    async with FileEventStore(root, durability="write") as store:
        if branch != "main":
            await store.create_branch(session, branch, fork_sequence=0)
        for n in range(1, count + 1):
            await store.append(ev(session, n, branch))
    return root / session / f"{branch}.jsonl"


def _with_sequence(line: bytes, sequence: int) -> bytes:
    """The line with another sequence, padded to its length so offsets stay put."""
    old = b'"sequence":%d' % json.loads(line)["sequence"]
    new = b'"sequence":%d' % sequence
    assert old in line and len(new) <= len(old)
    return line.replace(old, new.ljust(len(old)), 1)


async def _reads(store: FileEventStore, start: int = 1) -> list[EventRecord]:
    return await store.read("s1", from_sequence=start)


async def _iterated(store: FileEventStore, start: int = 1) -> list[EventRecord]:
    return [r async for r in store.iter_events("s1", from_sequence=start)]


async def _expect_corrupt(root: Path, path: Path, line: int, start: int = 1) -> None:
    async with FileEventStore(root) as store:
        for read in (_reads, _iterated):
            with pytest.raises(CorruptLog) as info:
                await read(store, start)
            assert (info.value.path, info.value.line_number) == (str(path), line), info.value


async def test_a_line_overwritten_by_its_neighbour_is_reported(tmp_path: Path) -> None:
    path = await _write(tmp_path, 20)
    lines = lines_of(path)
    lines[7] = lines[6]
    path.write_bytes(b"".join(lines))
    await _expect_corrupt(tmp_path, path, 8)


async def test_swapped_lines_are_reported(tmp_path: Path) -> None:
    path = await _write(tmp_path, 20)
    lines = lines_of(path)
    lines[7], lines[8] = lines[8], lines[7]
    path.write_bytes(b"".join(lines))
    await _expect_corrupt(tmp_path, path, 8)


@pytest.mark.parametrize(("session", "branch"), [("s2", "main"), ("s1", "alt")])
async def test_a_record_of_another_session_or_branch_is_reported(
    tmp_path: Path, session: str, branch: str
) -> None:
    path = await _write(tmp_path, 20)
    other = await _write(tmp_path, 20, session, branch)
    lines = lines_of(path)
    lines[7] = lines_of(other)[7]
    path.write_bytes(b"".join(lines))
    await _expect_corrupt(tmp_path, path, 8)


async def test_a_last_sequence_out_of_place_is_not_believed(tmp_path: Path) -> None:
    path = await _write(tmp_path, 300)
    lines = lines_of(path)
    lines[-1] = _with_sequence(lines[-1], 302)
    damaged = b"".join(lines)
    path.write_bytes(damaged)
    async with FileEventStore(tmp_path) as store:
        with pytest.raises(CorruptLog) as info:
            await store.head("s1")
        assert (info.value.path, info.value.line_number) == (str(path), 300)
        with pytest.raises(CorruptLog):
            await store.append(ev("s1", 303))
    assert path.read_bytes() == damaged


async def test_a_first_sequence_out_of_place_is_not_believed(tmp_path: Path) -> None:
    path = await _write(tmp_path, 1)
    path.write_bytes(_with_sequence(path.read_bytes(), 3))
    async with FileEventStore(tmp_path) as store:
        with pytest.raises(CorruptLog) as info:
            await store.head("s1")
        assert info.value.line_number == 1


@pytest.mark.parametrize("start", [1, 100, 140, 149, 150])
async def test_a_deleted_line_is_reported_where_it_was(tmp_path: Path, start: int) -> None:
    path = await _write(tmp_path, 300)
    lines = lines_of(path)
    del lines[149]
    path.write_bytes(b"".join(lines))
    await _expect_corrupt(tmp_path, path, 150, start)


@pytest.mark.parametrize("damage", ["duplicate", "swap"])
async def test_damage_that_looks_like_a_batch_cut_short_is_not_cut(
    tmp_path: Path, damage: str
) -> None:
    """A batch's marked lines out of place at the end are damage, not a torn write."""
    async with FileEventStore(tmp_path, durability="write") as store:
        await store.append(ev("s1", 1))
        await store.append_batch([ev("s1", n) for n in (2, 3, 4)])
    path = tmp_path / "s1" / "main.jsonl"
    lines = lines_of(path)
    if damage == "duplicate":
        lines[3] = lines[2]
    else:
        lines[2], lines[3] = lines[3], lines[2]
    damaged = b"".join(lines)
    path.write_bytes(damaged)
    async with FileEventStore(tmp_path) as store:
        with pytest.raises(CorruptLog) as info:
            await store.head("s1")
        assert info.value.line_number in (3, 4), info.value
    assert path.read_bytes() == damaged
    assert not (tmp_path / "s1" / "main.jsonl.torn").exists()


async def test_a_batch_cut_short_is_still_cut(tmp_path: Path) -> None:
    """What a kill really leaves of a batch still goes aside whole."""
    path = await _write(tmp_path, 2)
    batch = encode_batch([ev("s1", n) for n in (3, 4, 5)], 1 << 20)
    kept = path.read_bytes()
    path.write_bytes(kept + b"".join(batch.splitlines(keepends=True)[:2]))
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 2
        assert [r.sequence for r in await store.read("s1")] == [1, 2]
    assert path.read_bytes() == kept


async def test_a_probe_that_lands_out_of_order_is_reported(tmp_path: Path) -> None:
    """Seeking by a line whose sequence contradicts the known points fails, naming it."""
    path = await _write(tmp_path, 1000)
    lines = lines_of(path)
    index = SparseIndex()
    ops = FileOps()
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        # Where the first probe for #600 lands: the line to damage.
        point = index.locate(ops, fd, str(path), 600, (1, 0), (1001, size))
        landed = point[0]
    finally:
        os.close(fd)
    lines[landed - 1] = _with_sequence(lines[landed - 1], 1)
    path.write_bytes(b"".join(lines))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(CorruptLog) as info:
            SparseIndex().locate(ops, fd, str(path), 600, (1, 0), (1001, path.stat().st_size))
    finally:
        os.close(fd)
    assert info.value.line_number == landed


async def test_a_follower_of_a_live_log_sees_no_damage(tmp_path: Path) -> None:
    """Not a regression test: the checks take a writer's half-done batches for what they are."""
    total = 200
    async with (
        FileEventStore(tmp_path, durability="write") as writer,
        FileEventStore(tmp_path, read_only=True) as reader,
    ):
        await writer.append(ev("s1", 1))
        seen: list[int] = []

        async def follow() -> None:
            async for record in reader.follow("s1", poll_interval=0):
                seen.append(record.sequence)
                if record.sequence == total:
                    return

        follower = asyncio.create_task(follow())
        sequence = 2
        while sequence <= total:
            size = min(1 + sequence % 7, total - sequence + 1)
            pad = {"pad": "x" * (sequence * 97 % 5000)}
            await writer.append_batch(
                [ev("s1", n, data=pad) for n in range(sequence, sequence + size)]
            )
            sequence += size
        await asyncio.wait_for(follower, 30)
    assert seen == list(range(1, total + 1))
