"""``eventstore.file.verify``: the public report, its damage and notes, what it raises.

The individual rules are covered through the CLI's tests (``tests/journal/test_cli_verify*``).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from eventstore import EventRecord, InvalidIdentifier
from eventstore.file import FileEventStore, VerifyProblem, VerifyReport, verify


async def _store(root: Path) -> None:
    async with FileEventStore(root) as store:
        for sequence in (1, 2, 3):
            await store.append(EventRecord.new("s", "main", sequence, "k", {"n": sequence}))
        await store.create_branch("s", "alt", fork_sequence=2)
        await store.append(EventRecord.new("s", "alt", 3, "k", None))


class _Counter:
    def __init__(self) -> None:
        self.total = -1
        self.done = 0

    def advance(self, count: int) -> None:
        self.done += count


async def test_a_healthy_store_is_ok(tmp_path: Path) -> None:
    await _store(tmp_path)
    report = verify(tmp_path)
    assert isinstance(report, VerifyReport)
    assert (report.sessions, report.branches, report.records) == (1, 2, 4)
    assert report.ok and report.problems == () and report.damage == report.notes == ()
    assert verify(str(tmp_path), "s") == report


async def test_damage_and_notes_are_told_apart(tmp_path: Path) -> None:
    await _store(tmp_path)
    (tmp_path / "s" / "alt.jsonl.torn").write_bytes(b"{")
    report = verify(tmp_path)
    assert report.ok
    [note] = report.notes
    assert note == VerifyProblem(str(tmp_path / "s" / "alt.jsonl.torn"), 0, note.reason, False)
    with (tmp_path / "s" / "main.jsonl").open("ab") as log:
        log.write(b'{"torn"')
    report = verify(tmp_path)
    assert not report.ok
    [damage] = report.damage
    assert (Path(damage.path).name, damage.line, damage.damage) == ("main.jsonl", 4, True)
    assert str(damage).startswith(f"{damage.path}:4: torn last line")
    assert report.problems == (note, damage)  # in file order


async def test_the_report_is_frozen(tmp_path: Path) -> None:
    await _store(tmp_path)
    report = verify(tmp_path)
    with pytest.raises(AttributeError):
        report.records = 0  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(report))["records"] == 4


async def test_progress_gets_the_total_and_every_byte(tmp_path: Path) -> None:
    await _store(tmp_path)
    counter = _Counter()
    verify(tmp_path, progress=counter)
    size = sum(p.stat().st_size for p in (tmp_path / "s").glob("*.jsonl"))
    assert counter.total == counter.done == size


def test_what_it_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        verify(tmp_path, "nope")
    with pytest.raises(InvalidIdentifier):
        verify(tmp_path, "../x")
