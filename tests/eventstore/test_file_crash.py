"""Crash safety: torn tails are cut to ``.torn``, corruption is named, SIGKILL loses
nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import random
import textwrap
import threading
from pathlib import Path

import pytest

from eventstore import BranchExists, BranchNotFound, CorruptLog, FileEventStore
from eventstore.file._batch import encode_batch

from ._file_helpers import FaultyOps, encode_line, ev, kill_after, legacy_root, lines_of


async def _write(root: Path, count: int) -> list[bytes]:
    # One append each: every line is a complete unit on its own (a batch's
    # lines are not, see the batch tests below).
    async with FileEventStore(root, durability="write") as store:
        for n in range(1, count + 1):
            await store.append(ev("s1", n, data={"text": "x" * n}))
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
            size = rng.randint(1, 8)
            batch = [
                EventRecord.new(session, "main", seq + n, "message",
                                {"seq": seq + n, "last": seq + size,
                                 "pad": "p" * rng.randint(0, 9000)})
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
    return await kill_after(_CHILD, root, acks, seed)


async def test_sigkill_loses_nothing_acknowledged_and_keeps_batches_whole(
    tmp_path: Path,
) -> None:
    # Batches of up to 8 records of up to 9 kB: a kill often lands inside one's
    # write. After it each head is a batch's last record (``data["last"]``).
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
                assert all(r.data["last"] <= head for r in records), f"kill {kill}: torn batch"
                assert not records or records[-1].data["last"] == head, f"kill {kill}"
                acked[session] = head
            # The log takes appends again right away.
            head = await store.head("s0")
            await store.append(ev("s0", head + 1, data={"seq": head + 1, "last": head + 1}))
            acked["s0"] = head + 1
        for path in tmp_path.glob("*/main.jsonl"):
            for line in lines_of(path):
                json.loads(line)


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
        with pytest.raises(BranchNotFound):
            await store.append(ev("s1", 1, branch="new"))
        await store.create_branch("s1", "new", fork_sequence=0)
        first = await store.append(ev("s1", 1, branch="new"))
        assert await store.read("s1", "new") == [first]
        await store.append(ev("s2", 1))
        assert await store.list_sessions() == ["s1", "s2"]
    assert (tmp_path / "s1" / "new.jsonl.torn").read_bytes() == orphan


async def _orphan(root: Path, session: str, branch: str, count: int) -> bytes:
    """Leave what a crash after a new root branch's first write leaves: a file only.

    That write is one batch (lines marked with its ``batch_end``); anything more
    would prove a manifest once named the branch.
    """
    data = encode_batch([ev(session, n, branch=branch) for n in range(1, count + 1)], 1 << 20)
    (root / session).mkdir(exist_ok=True)
    (root / session / f"{branch}.jsonl").write_bytes(data)
    return data


async def test_a_fork_named_like_an_orphan_file_starts_from_its_fork_point(
    tmp_path: Path,
) -> None:
    async with FileEventStore(tmp_path) as store:
        trunk = await store.append_batch([ev("s1", n) for n in (1, 2)])
    orphan = await _orphan(tmp_path, "s1", "b1", 3)
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1", "b1") == 0
        info = await store.create_branch("s1", "b1", fork_sequence=1)
        assert (info.fork_sequence, info.head) == (1, 1)
        assert await store.read("s1", "b1") == trunk[:1]
        own = await store.append(ev("s1", 2, branch="b1"))
    async with FileEventStore(tmp_path) as store:
        assert await store.read("s1", "b1") == [trunk[0], own]
    assert (tmp_path / "s1" / "b1.jsonl.torn").read_bytes() == orphan


async def test_an_unnamed_main_is_empty_whatever_its_file_holds(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as store:
        await store.create_branch("s1", "other")
        await store.append(ev("s1", 1, branch="other"))
    legacy_root(tmp_path, "s1", "other")
    await _orphan(tmp_path, "s1", "main", 2)
    await _orphan(tmp_path, "s2", "main", 2)
    async with FileEventStore(tmp_path) as store:
        for session in ("s1", "s2"):
            info = await store.create_branch(session, "x")
            assert (info.parent_branch, info.fork_sequence, info.head) == ("main", 0, 0)
            assert await store.head(session) == 0
            assert await store.read(session, "x") == []
            first = await store.append(ev(session, 1))
            assert await store.read(session) == [first]
    async with FileEventStore(tmp_path) as store:
        for session in ("s1", "s2"):
            assert [r.sequence for r in await store.read(session)] == [1]
            assert await store.head(session, "x") == 0


class _Reached(FaultyOps):
    """Tells when a ``pwrite`` begins (then waits at the gate)."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = threading.Event()

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self.reached.set()
        return super().pwrite(fd, data, offset)


# Only main comes into being by an append: the one first append that names a branch.
@pytest.mark.parametrize("branch", ["main"])
async def test_close_during_a_first_append_finishes_it(tmp_path: Path, branch: str) -> None:
    ops = _Reached()
    store = FileEventStore(tmp_path, ops=ops)
    await store.open()
    ops.gate = threading.Event()
    first = asyncio.create_task(store.append(ev("s1", 1, branch=branch)))
    assert await asyncio.to_thread(ops.reached.wait, 30)
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)  # close() has queued its stop behind the write
    ops.gate.set()
    await closing
    # Its events and the manifest entry naming them are one step: it is acknowledged.
    stored = await first
    async with FileEventStore(tmp_path) as store:
        assert await store.read("s1", branch) == [stored]
        assert [b.branch_id for b in await store.list_branches("s1")] == [branch]
        with pytest.raises(BranchExists):
            await store.create_branch("s1", branch)
        assert await store.append(ev("s1", 2, branch=branch))
