"""A batch is all or nothing across a kill: its lines carry ``batch_end`` and the open
cuts a batch whose last line is missing back to its first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from eventstore import FileEventStore
from eventstore._codec import decode_record

from ._file_helpers import bare, encode_line, ev, lines_of


async def _three_units(root: Path) -> tuple[list[bytes], list[int]]:
    """``main``: 1 alone, then batch 2..4, then batch 5..8; the lines and the unit ends."""
    async with FileEventStore(root, durability="write") as store:
        await store.append(ev("s1", 1))
        await store.append_batch([ev("s1", n, data={"pad": "x" * n}) for n in range(2, 5)])
        await store.append_batch([ev("s1", n) for n in range(5, 9)])
    lines = lines_of(root / "s1" / "main.jsonl")
    ends = [len(b"".join(lines[:count])) for count in (1, 4, 8)]
    return lines, ends


async def test_batch_lines_are_plain_records_with_their_last_sequence(tmp_path: Path) -> None:
    lines, _ = await _three_units(tmp_path)
    marks = [json.loads(line).get("batch_end") for line in lines]
    assert marks == [None, 4, 4, None, 8, 8, 8, None]
    assert [decode_record(line).sequence for line in lines] == list(range(1, 9))
    async with FileEventStore(tmp_path) as store:
        assert [r.sequence for r in await store.read("s1")] == list(range(1, 9))


async def test_a_batch_cut_at_any_byte_goes_back_to_the_previous_boundary(
    tmp_path: Path,
) -> None:
    lines, ends = await _three_units(tmp_path / "orig")
    whole = b"".join(lines)
    records = [decode_record(line) for line in lines]
    root = tmp_path / "cut"
    shutil.copytree(tmp_path / "orig", root, ignore=shutil.ignore_patterns(".lock"))
    path, torn = root / "s1" / "main.jsonl", root / "s1" / "main.jsonl.torn"
    # Every byte offset strictly inside the two batches, line boundaries included.
    for cut in range(ends[0] + 1, ends[2]):
        if cut == ends[1]:
            continue
        boundary = max(end for end in ends if end < cut)
        head = 1 if boundary == ends[0] else 4
        path.write_bytes(whole[:cut])
        torn.unlink(missing_ok=True)
        async with FileEventStore(root, durability="write") as store:
            assert await store.head("s1") == head, f"cut at byte {cut}"
            assert await store.read("s1") == records[:head], f"cut at byte {cut}"
            assert path.read_bytes() == whole[:boundary]
            cut_off = whole[boundary:cut]
            assert torn.read_bytes() == cut_off + (b"" if cut_off.endswith(b"\n") else b"\n")
            # The batch was never acknowledged: sending it again stores it whole
            # (at new positions: those of the cut records are never reused).
            if head == 1:
                assert bare(await store.append_batch(records[1:4])) == bare(records[1:4])
            assert bare(await store.append_batch(records[4:])) == bare(records[4:])
        assert _unpositioned(path.read_bytes()) == _unpositioned(whole)


async def test_a_reader_does_not_see_a_batch_still_being_written(tmp_path: Path) -> None:
    lines, _ = await _three_units(tmp_path)
    path = tmp_path / "s1" / "main.jsonl"
    # A writer in another process is in the middle of batch 5..8.
    path.write_bytes(b"".join(lines[:6]))
    async with FileEventStore(tmp_path, read_only=True) as reader:
        assert await reader.head("s1") == 4
        assert [r.sequence for r in await reader.read("s1")] == [1, 2, 3, 4]
        path.write_bytes(b"".join(lines))
        assert await reader.head("s1") == 8
    assert not (tmp_path / "s1" / "main.jsonl.torn").exists()


async def test_a_merge_cut_short_is_undone_whole(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, durability="write") as store:
        await store.append(ev("s1", 1))
        await store.create_branch("s1", "side")
        await store.append_batch([ev("s1", n, branch="side") for n in (2, 3, 4)])
        await store.merge_branch("s1", "side", "main")
    path = tmp_path / "s1" / "main.jsonl"
    lines = lines_of(path)
    assert [json.loads(line).get("batch_end") for line in lines] == [None, 4, 4, None]
    # The kill kept the merge's first two lines, and the manifest still holds
    # the intent it recorded before writing them.
    path.write_bytes(b"".join(lines[:3]))
    manifest_path = tmp_path / "s1" / "branches.json"
    manifest = json.loads(manifest_path.read_bytes())
    manifest["pending_merge"] = {
        "source": "side",
        "target": "main",
        "target_head": 1,
        "target_size": len(lines[0]),
        "count": 3,
    }
    manifest_path.write_text(json.dumps(manifest))
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 1
        assert (await store.branch_info("s1", "side")).merged_into is None
        result = await store.merge_branch("s1", "side", "main")
        assert (result.merged_events, result.target_head) == (3, 4)


async def test_a_log_written_before_batch_marks_keeps_its_whole_lines(tmp_path: Path) -> None:
    # Lines without marks (older files) are each a unit of their own.
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s1", 1))
    batch = [ev("s1", n) for n in range(2, 6)]
    path = tmp_path / "s1" / "main.jsonl"
    with path.open("ab") as log:
        log.write(b"".join(encode_line(r) for r in batch[:2]) + encode_line(batch[2])[:10])
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 3
        assert await store.read("s1", from_sequence=2) == batch[:2]
        assert bare(await store.append_batch(batch[2:])) == batch[2:]
    assert bare([decode_record(line) for line in lines_of(path)][1:]) == batch


def _unpositioned(log: bytes) -> list[dict[str, object]]:
    """The log's lines as JSON objects without ``position`` (batch marks kept)."""
    return [
        {k: v for k, v in json.loads(line).items() if k != "position"} for line in log.splitlines()
    ]
