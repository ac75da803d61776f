"""Crash safety: torn tails are cut to ``.torn``, corruption is named, SIGKILL loses
nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eventstore import CorruptLog, FileEventStore, SequenceConflict
from eventstore._codec import encode_line

from ._file_helpers import ev, lines_of


async def _write(root: Path, count: int) -> list[bytes]:
    async with FileEventStore(root) as store:
        await store.append_batch([ev("s1", n, data={"text": "x" * n}) for n in range(1, count + 1)])
    return lines_of(root / "s1" / "main.jsonl")


async def test_torn_tail_at_every_byte_is_cut_and_kept(tmp_path: Path) -> None:
    lines = await _write(tmp_path / "orig", 3)
    good, last = b"".join(lines[:2]), lines[2]
    for cut in range(1, len(last)):
        root = tmp_path / f"cut{cut}"
        (root / "s1").mkdir(parents=True)
        (root / "s1" / "branches.json").write_bytes(
            (tmp_path / "orig" / "s1" / "branches.json").read_bytes()
        )
        path = root / "s1" / "main.jsonl"
        path.write_bytes(good + last[:cut])
        async with FileEventStore(root) as store:
            assert await store.head("s1") == 2
            assert [r.sequence for r in await store.read("s1")] == [1, 2]
            assert path.read_bytes() == good
            assert (root / "s1" / "main.jsonl.torn").read_bytes() == last[:cut] + b"\n"
            await store.append(ev("s1", 3))
        async with FileEventStore(root) as store:
            assert [r.sequence for r in await store.read("s1")] == [1, 2, 3]


@pytest.mark.parametrize(
    "garbage", [b"{not json}\n", b"\x00\x00\x00\x00\n", b'{"session_id": "s1"}\n']
)
async def test_unparseable_last_line_is_torn(tmp_path: Path, garbage: bytes) -> None:
    lines = await _write(tmp_path, 3)
    path = tmp_path / "s1" / "main.jsonl"
    path.write_bytes(b"".join(lines) + garbage)
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 3
        assert await store.append(ev("s1", 4))
    assert (tmp_path / "s1" / "main.jsonl.torn").read_bytes() == garbage
    assert len(lines_of(path)) == 4


@pytest.mark.parametrize("line", [1, 3, 5])
async def test_corruption_in_the_middle_names_file_and_line(tmp_path: Path, line: int) -> None:
    lines = await _write(tmp_path, 8)
    lines[line - 1] = lines[line - 1].replace(b'"kind"', b'"ki\x01nd"', 1)
    path = tmp_path / "s1" / "main.jsonl"
    path.write_bytes(b"".join(lines))
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 8
        with pytest.raises(CorruptLog) as info:
            await store.read("s1")
        assert (info.value.path, info.value.line_number) == (str(path), line)
        with pytest.raises(CorruptLog):
            [r async for r in store.iter_events("s1")]


async def test_sequence_break_is_corruption(tmp_path: Path) -> None:
    lines = await _write(tmp_path, 5)
    path = tmp_path / "s1" / "main.jsonl"
    path.write_bytes(b"".join(lines[:2] + lines[3:]))
    async with FileEventStore(tmp_path) as store:
        with pytest.raises(CorruptLog) as info:
            await store.read("s1")
        assert info.value.path == str(path)


async def test_corrupt_line_before_a_torn_tail_is_not_cut(tmp_path: Path) -> None:
    lines = await _write(tmp_path, 3)
    path = tmp_path / "s1" / "main.jsonl"
    damaged = b"".join(lines[:2]) + b"garbage\n" + b'{"torn'
    path.write_bytes(damaged)
    async with FileEventStore(tmp_path) as store:
        with pytest.raises(CorruptLog) as info:
            await store.head("s1")
        assert info.value.line_number == 3


@pytest.mark.parametrize("content", [b"", b"{", b'{"format": 1, "session_id": "other"}'])
async def test_corrupt_manifest_raises_and_drops_nothing(tmp_path: Path, content: bytes) -> None:
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s1", 1))
        await store.create_branch("s1", "alt")
    manifest = tmp_path / "s1" / "branches.json"
    manifest.write_bytes(content)
    async with FileEventStore(tmp_path) as store:
        for call in (store.list_branches("s1"), store.head("s1"), store.read("s1", "alt")):
            with pytest.raises(CorruptLog) as info:
                await call
            assert info.value.path == str(manifest)


_CHILD = textwrap.dedent(
    """
    import asyncio, random, sys
    from eventstore import EventRecord, FileEventStore

    async def writer(store, session, rng):
        seq = await store.head(session)
        while True:
            size = rng.randint(1, 3)
            batch = [
                EventRecord.new(session, "main", seq + n, "message",
                                {"seq": seq + n, "pad": "p" * rng.randint(0, 9000)})
                for n in range(1, size + 1)
            ]
            await store.append_batch(batch)
            seq += size
            print(session, seq, flush=True)

    async def main(root, seed):
        rng = random.Random(seed)
        async with FileEventStore(root) as store:
            await asyncio.gather(*(writer(store, f"s{k}", rng) for k in range(4)))

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def _kill_after(root: Path, acks: int, seed: int) -> dict[str, int]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(root),
        str(seed),
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    acked: dict[str, int] = {}
    assert child.stdout is not None
    for _ in range(acks):
        line = await child.stdout.readline()
        assert line, "the writer died before it was killed"
        session, seq = line.split()
        acked[session.decode()] = int(seq)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    return acked


async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("SIGKILL_SEED", 1234))
    acked: dict[str, int] = {}
    for kill in range(24):
        acked.update(await _kill_after(tmp_path, rng.randint(1, 40), kill))
        async with FileEventStore(tmp_path) as store:
            for session, seq in acked.items():
                head = await store.head(session)
                assert head >= seq, f"kill {kill}: {session} acknowledged {seq}, head {head}"
                records = await store.read(session)
                assert [r.sequence for r in records] == list(range(1, head + 1))
                assert [r.data["seq"] for r in records] == list(range(1, head + 1))
                acked[session] = head
            # The log takes appends again right away.
            head = await store.head("s0")
            await store.append(ev("s0", head + 1, data={"seq": head + 1}))
            acked["s0"] = head + 1
        for path in tmp_path.glob("*/main.jsonl"):
            for line in lines_of(path):
                json.loads(line)


async def test_a_batch_cut_short_by_a_kill_is_kept_as_written(tmp_path: Path) -> None:
    batch = [ev("s1", n) for n in range(2, 6)]
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s1", 1))
        await store.append_batch(batch)
    path = tmp_path / "s1" / "main.jsonl"
    lines = lines_of(path)
    # A kill in the middle of the write kept two whole lines and part of a third:
    # the whole lines are valid records, the torn one goes aside.
    path.write_bytes(b"".join(lines[:3]) + lines[3][:10])
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 3
        assert await store.read("s1", from_sequence=2) == batch[:2]
        with pytest.raises(SequenceConflict):
            await store.append_batch(batch)
        assert await store.append_batch(batch[2:]) == batch[2:]
    assert lines_of(path) == lines


async def test_first_events_a_crash_left_unnamed_stay_invisible(tmp_path: Path) -> None:
    # A kill between a new branch's first write and its manifest entry leaves a
    # file the manifest does not name: never acknowledged, so never shown.
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s1", 1))
    orphan = encode_line(ev("s1", 1, branch="new"))
    (tmp_path / "s1" / "new.jsonl").write_bytes(orphan)
    (tmp_path / "s2").mkdir()
    (tmp_path / "s2" / "main.jsonl").write_bytes(encode_line(ev("s2", 1)))
    async with FileEventStore(tmp_path) as store:
        assert await store.list_sessions() == ["s1"]
        assert await store.read("s1", "new") == []
        assert await store.read("s2") == []
        assert [b.branch_id for b in await store.list_branches("s1")] == ["main"]
        first = await store.append(ev("s1", 1, branch="new"))
        assert await store.read("s1", "new") == [first]
        await store.append(ev("s2", 1))
        assert await store.list_sessions() == ["s1", "s2"]
    assert (tmp_path / "s1" / "new.jsonl.torn").read_bytes() == orphan
