"""A first write a crash or a full disk cut off before its manifest entry is a leftover,
not damage: ``verify`` notes it (exit 0), and the writer that next loads the session
moves it to ``.torn``."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from eventstore import EventRecord, StorageError
from eventstore.file import FileEventStore, verify
from eventstore.file._batch import encode_batch
from journal.cli import main

from ..eventstore._file_helpers import FaultyOps


def ev(session: str, sequence: int, branch: str = "main") -> EventRecord:
    return EventRecord.new(session, branch, sequence, "message", {"n": sequence})


async def _verify(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    # The command runs its own event loop: off this one.
    code = await asyncio.to_thread(main, ["--root", str(root), "verify"])
    return code, capsys.readouterr().out


async def _first_append_fails(root: Path) -> Path:
    """A new session's first append: its events are written, its manifest is not."""
    ops = FaultyOps()
    async with FileEventStore(root, ops=ops) as store:
        await store.append(ev("kept", 1))
        # pwrite: the feed's stream table and index, the branch file, then the
        # manifest's temp file (fails).
        ops.arm("pwrite", errno.ENOSPC, skip=3)
        with pytest.raises(StorageError):
            await store.append_batch([ev("new", n) for n in (1, 2, 3)])
    leftover = root / "new" / "main.jsonl"
    assert leftover.stat().st_size > 0
    assert not (root / "new" / "branches.json").exists()
    return leftover


async def test_enospc_in_a_first_append_is_a_note_not_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leftover = await _first_append_fails(tmp_path)
    report = verify(tmp_path)
    assert report.damage == ()
    assert [(note.path, note.line) for note in report.notes] == [(str(leftover), 0)]
    assert "never acknowledged" in report.notes[0].reason
    code, out = await _verify(tmp_path, capsys)
    assert code == 0, out
    assert f"note: {leftover}: no branches.json" in out


async def test_the_writer_moves_the_leftover_aside_when_it_loads_the_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leftover = await _first_append_fails(tmp_path)
    data = leftover.read_bytes()
    async with FileEventStore(tmp_path) as store:
        assert await store.head("new") == 0
    assert leftover.read_bytes() == b""
    assert (tmp_path / "new" / "main.jsonl.torn").read_bytes() == data
    report = verify(tmp_path)
    assert report.damage == ()
    assert [note.path for note in report.notes] == [str(leftover) + ".torn"]
    async with FileEventStore(tmp_path) as store:
        assert await store.append(ev("new", 1))
    assert (await _verify(tmp_path, capsys))[0] == 0


@pytest.mark.parametrize("cut", [0, 40], ids=["whole", "torn"])
async def test_a_new_root_branch_cut_off_in_a_named_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: int
) -> None:
    # A kill between a new root branch's write (whole, or cut short) and its
    # manifest entry, in a session the manifest already names.
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s1", 1))
    data = encode_batch([ev("s1", n, branch="other") for n in (1, 2, 3)], 1 << 20)
    if cut:
        data = data[:-cut]
    leftover = tmp_path / "s1" / "other.jsonl"
    leftover.write_bytes(data)
    report = verify(tmp_path)
    assert report.damage == ()
    assert [note.path for note in report.notes] == [str(leftover)]
    assert report.records == 1
    async with FileEventStore(tmp_path) as store:
        assert [b.branch_id for b in await store.list_branches("s1")] == ["main"]
    assert (tmp_path / "s1" / "other.jsonl.torn").read_bytes().startswith(data)
    assert (await _verify(tmp_path, capsys))[0] == 0


async def test_an_unnamed_file_with_two_writes_is_still_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s1", 1))
    # Two separate appends: only a manifest naming the branch lets a second one in.
    data = encode_batch([ev("s1", 1, "other")], 1 << 20) + encode_batch(
        [ev("s1", 2, "other")], 1 << 20
    )
    lost = tmp_path / "s1" / "other.jsonl"
    lost.write_bytes(data)
    report = verify(tmp_path)
    assert [problem.path for problem in report.damage] == [str(lost)]
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 1
    # The writer leaves what may be acknowledged history where it is.
    assert lost.read_bytes() == data
    assert (await _verify(tmp_path, capsys))[0] == 1
