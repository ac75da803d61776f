"""``verify``'s checks, one kind of damage at a time (in-process: each is one file edit).

The command itself (exit codes, output, nothing repaired) is driven as a
subprocess in ``test_cli.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from eventstore import EventRecord
from eventstore.file import FileEventStore, verify


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    """Session ``s``: main 1..4, ``alt`` forked at 2 with 3..4, ``done`` merged into main."""
    async with FileEventStore(tmp_path, durability="write") as store:
        for sequence in range(1, 5):
            await store.append(EventRecord.new("s", "main", sequence, "k", sequence))
        await store.create_branch("s", "alt", fork_sequence=2)
        for sequence in (3, 4):
            await store.append(EventRecord.new("s", "alt", sequence, "k", None))
        await store.create_branch("s", "done")
        await store.append(EventRecord.new("s", "done", 5, "k", None))
        await store.append(EventRecord.new("s", "done", 6, "k", None))
        await store.merge_branch("s", "done", "main")
    return tmp_path


def messages(root: Path) -> list[tuple[str, int, str]]:
    report = verify(root)
    return [(Path(p.path).name, p.line, p.reason) for p in report.damage]


def edit_manifest(root: Path, change: dict[str, object], branch: str | None = None) -> None:
    path = root / "s" / "branches.json"
    manifest = json.loads(path.read_bytes())
    if branch is None:
        manifest.update(change)
    else:
        for entry in manifest["branches"]:
            if entry["branch_id"] == branch:
                entry.update(change)
    path.write_text(json.dumps(manifest))


def test_a_healthy_store_has_no_problems(root: Path) -> None:
    report = verify(root)
    assert (report.sessions, report.branches, report.records) == (1, 3, 10)
    assert report.damage == ()
    assert report.notes == ()


def test_unknown_session(root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        verify(root, "nope")


def test_an_unparseable_line_in_the_middle_is_reported_once(root: Path) -> None:
    log = root / "s" / "main.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = b"{oops\n"
    log.write_bytes(b"".join(lines))
    found = messages(root)
    assert len(found) == 1
    name, line, message = found[0]
    assert (name, line) == ("main.jsonl", 2)
    assert message.startswith("unparseable record")


def test_an_unparseable_last_line_is_a_torn_tail(root: Path) -> None:
    with (root / "s" / "alt.jsonl").open("ab") as stream:
        stream.write(b"garbage\n")
    [(name, line, message)] = messages(root)
    assert (name, line) == ("alt.jsonl", 3)
    assert message.startswith("torn last line (unparseable record")


async def test_a_batch_cut_short_by_a_kill_is_reported(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, durability="write") as store:
        await store.append(EventRecord.new("b", "main", 1, "k", 1))
        await store.append_batch([EventRecord.new("b", "main", n, "k", n) for n in (2, 3, 4)])
    log = tmp_path / "b" / "main.jsonl"
    whole = log.read_bytes()
    assert verify(tmp_path).damage == ()
    # A kill after the batch's first two lines: each is complete, the batch is not.
    # (Not the session's first write: its manifest comes after it, naming it whole.)
    log.write_bytes(b"".join(whole.splitlines(keepends=True)[:3]))
    [(name, line, message)] = messages(tmp_path)
    assert (name, line) == ("main.jsonl", 3)
    assert message.startswith("batch cut short (it ends at sequence 4)")


def test_records_filed_under_the_wrong_branch_or_repeated(root: Path) -> None:
    log = root / "s" / "alt.jsonl"
    first = msgspec.json.decode(log.read_bytes().splitlines()[0])
    second = {**first, "sequence": 4, "branch_id": "main"}
    log.write_bytes(msgspec.json.encode(first) + b"\n" + msgspec.json.encode(second) + b"\n")
    found = messages(root)
    assert ("alt.jsonl", 2, "record of s/main in the file of s/alt") in found
    assert any(m.startswith(f"event_id {first['event_id']} repeats line 1") for *_, m in found)


def test_fork_point_must_match_the_first_sequence(root: Path) -> None:
    edit_manifest(root, {"fork_sequence": 1}, branch="alt")
    assert messages(root) == [
        ("alt.jsonl", 1, "first sequence 3, expected 2 (fork point 1 in branches.json)")
    ]


def test_fork_beyond_the_parents_head(root: Path) -> None:
    log = root / "s" / "main.jsonl"
    log.write_bytes(log.read_bytes().splitlines(keepends=True)[0])
    found = messages(root)
    assert ("branches.json", 1, "'alt' forks 'main' at 2, beyond its head 1") in found


def test_unknown_parent_and_merge_target(root: Path) -> None:
    edit_manifest(root, {"parent_branch": "ghost"}, branch="alt")
    edit_manifest(root, {"merged_into": "nowhere"}, branch="done")
    found = messages(root)
    assert ("branches.json", 1, "'alt' forks from unknown branch 'ghost'") in found
    assert ("branches.json", 1, "'done' was merged into unknown branch 'nowhere'") in found


def test_a_merge_whose_events_are_missing_from_the_target(root: Path) -> None:
    log = root / "s" / "main.jsonl"
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:5]))
    found = messages(root)
    assert (
        "branches.json",
        1,
        "'done' is marked merged into 'main', which holds 1 of its 2 events",
    ) in found
    # The merge was written as one batch, so its cut is also a batch cut short;
    # the manifest written after it knew main had reached 6.
    assert [m for name, line, m in found if name == "main.jsonl"] == [
        "batch cut short (it ends at sequence 6); a writer opening the store moves its "
        "lines aside to a .torn file",
        "holds sequences up to 5, but branches.json records that the branch reached 6: "
        "acknowledged events are missing",
    ]
    assert len(found) == 3


def test_an_interrupted_merge(root: Path) -> None:
    pending = {"source": "alt", "target": "main", "target_head": 6, "target_size": 1, "count": 2}
    edit_manifest(root, {"pending_merge": pending})
    [(name, _, message)] = messages(root)
    assert name == "branches.json"
    assert message.startswith("interrupted merge of 'alt' into 'main'")


def test_files_the_store_cannot_see(root: Path) -> None:
    (root / "s" / "stray.jsonl").write_bytes((root / "s" / "main.jsonl").read_bytes())
    orphan = root / "orphan"
    orphan.mkdir()
    (orphan / "main.jsonl").write_bytes(b"")
    (root / "s" / "main.jsonl.torn").write_bytes(b"{half")
    report = verify(root)
    found = [(Path(p.path).name, p.reason) for p in report.damage]
    # A copy of another branch's records is no crash's leftover: damage, which the store refuses.
    assert (
        "stray.jsonl",
        "not listed in branches.json, and not a crash's leftover: "
        "record of s/main in the file of s/stray",
    ) in found
    # An empty file no manifest names is what a kill before a first write leaves: no damage.
    assert not any(name == "main.jsonl" for name, _ in found)
    assert any(p.reason == "record of s/main in the file of s/stray" for p in report.damage)
    assert [Path(n.path).name for n in report.notes] == ["main.jsonl.torn"]


def test_an_unreadable_manifest(root: Path) -> None:
    (root / "s" / "branches.json").write_bytes(b"[not json")
    found = messages(root)
    assert found[0][:2] == ("branches.json", 1)
    assert found[0][2].startswith("unreadable branch manifest")
