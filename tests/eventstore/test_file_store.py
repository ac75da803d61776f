"""FileEventStore specifics: layout, manifest, hardening, locking, read-only followers,
lifecycle and merge crash recovery."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import (
    CorruptLog,
    EventRecord,
    FileEventStore,
    InvalidEvent,
    InvalidIdentifier,
    ReadOnlyStore,
    StorageError,
    StoreClosed,
    StoreLocked,
    is_valid_identifier,
)
from eventstore._codec import decode_record

from ._file_helpers import encode_line, ev, lines_of

# -- layout and manifest ---------------------------------------------------------


async def test_one_jsonl_line_per_record(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as store:
        records = await store.append_batch([ev("s1", n) for n in (1, 2, 3)])
        await store.create_branch("s1", "alt", fork_sequence=2)
        own = await store.append(ev("s1", 3, branch="alt"))
    main = tmp_path / "s1" / "main.jsonl"
    # A batch's lines but its last carry one extra field, its last sequence
    # (crash atomicity); decoders ignore it, a single append carries nothing.
    assert [decode_record(line) for line in lines_of(main)] == records
    assert [json.loads(line).get("batch_end") for line in lines_of(main)] == [3, 3, None]
    assert lines_of(main)[-1] == encode_line(records[-1])
    assert (tmp_path / "s1" / "alt.jsonl").read_bytes() == encode_line(own)
    for line in lines_of(main):
        plain = json.loads(line)
        assert plain["session_id"] == "s1" and plain["kind"] == "message"


async def test_fork_copies_nothing(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as store:
        await store.append_batch([ev("s1", n) for n in range(1, 101)])
        before = (tmp_path / "s1" / "main.jsonl").read_bytes()
        await store.create_branch("s1", "alt", fork_sequence=50)
        assert not (tmp_path / "s1" / "alt.jsonl").exists()
        assert (tmp_path / "s1" / "main.jsonl").read_bytes() == before
        assert len(await store.read("s1", "alt")) == 50


async def test_manifest_persists_every_branch(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s1", 1))
        await store.create_branch("s1", "root2", fork_sequence=0)
        await store.append(ev("s1", 1, branch="root2"))
        await store.create_branch("s1", "alt")
        await store.create_branch("s1", "gone", from_branch="root2", fork_sequence=0)
        await store.merge_branch("s1", "gone", "alt")
        before = await store.list_branches("s1")
    manifest = json.loads((tmp_path / "s1" / "branches.json").read_bytes())
    assert {b["branch_id"] for b in manifest["branches"]} == {"main", "root2", "alt", "gone"}
    assert manifest["pending_merge"] is None
    async with FileEventStore(tmp_path) as store:
        assert await store.list_branches("s1") == before
    info = {b.branch_id: b for b in before}
    assert (info["root2"].parent_branch, info["root2"].fork_sequence) == ("main", 0)
    assert (info["gone"].parent_branch, info["gone"].merged_into) == ("root2", "alt")


# -- merges interrupted by a crash ---------------------------------------------------


async def _interrupted_merge(root: Path, *, appended: int) -> tuple[list[EventRecord], int]:
    """A merge of 3 events whose intent is on disk with ``appended`` of them written."""
    async with FileEventStore(root) as store:
        await store.append_batch([ev("s1", n) for n in (1, 2)])
        await store.create_branch("s1", "alt")
        own = await store.append_batch([ev("s1", n, branch="alt") for n in (3, 4, 5)])
        main = root / "s1" / "main.jsonl"
        size = main.stat().st_size
        await store.merge_branch("s1", "alt", "main")
    data = main.read_bytes()
    lines = data[size:].splitlines(keepends=True)
    main.write_bytes(data[:size] + b"".join(lines[:appended]))
    manifest_path = root / "s1" / "branches.json"
    manifest = json.loads(manifest_path.read_bytes())
    manifest["pending_merge"] = {
        "source": "alt",
        "target": "main",
        "target_head": 2,
        "target_size": size,
        "count": 3,
    }
    manifest_path.write_text(json.dumps(manifest))
    return own, size


@pytest.mark.parametrize("appended", [0, 1, 2])
async def test_unfinished_merge_is_undone_on_open(tmp_path: Path, appended: int) -> None:
    own, size = await _interrupted_merge(tmp_path, appended=appended)
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 2
        assert (await store.branch_info("s1", "alt")).merged_into is None
        assert (tmp_path / "s1" / "main.jsonl").stat().st_size == size
        result = await store.merge_branch("s1", "alt", "main")
        assert (result.merged_events, result.target_head) == (3, 5)
        merged = await store.read("s1", from_sequence=3)
        assert [m.metadata["merged_from"]["event_id"] for m in merged] == [o.event_id for o in own]
    assert json.loads((tmp_path / "s1" / "branches.json").read_bytes())["pending_merge"] is None


async def test_finished_merge_is_confirmed_on_open(tmp_path: Path) -> None:
    await _interrupted_merge(tmp_path, appended=3)
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 5
        assert (await store.branch_info("s1", "alt")).merged_into == "main"
    assert json.loads((tmp_path / "s1" / "branches.json").read_bytes())["pending_merge"] is None


# -- hardening --------------------------------------------------------------------


async def test_files_and_directories_are_private(tmp_path: Path) -> None:
    root = tmp_path / "store"
    async with FileEventStore(root) as store:
        await store.append(ev("s1", 1))
        await store.create_branch("s1", "alt")
        await store.append(ev("s1", 2, branch="alt"))
    with (root / "s1" / "main.jsonl").open("ab") as torn:
        torn.write(b'{"torn')
    async with FileEventStore(root) as store:
        await store.head("s1")
    modes = {
        p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")
    }
    modes["."] = stat.S_IMODE(root.stat().st_mode)
    assert modes == {
        ".": 0o700,
        ".lock": 0o600,
        "feed.idx": 0o600,
        "feed.streams": 0o600,
        "s1": 0o700,
        "s1/branches.json": 0o600,
        "s1/main.jsonl": 0o600,
        "s1/main.jsonl.torn": 0o600,
        "s1/alt.jsonl": 0o600,
    }


async def test_symlinks_out_of_the_root_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    async with FileEventStore(outside / "victim") as store:
        await store.append(ev("s1", 1))
    victim = outside / "victim" / "s1"
    snapshot = {p.name: p.read_bytes() for p in victim.iterdir()}
    root = tmp_path / "store"
    async with FileEventStore(root) as store:
        await store.append(ev("real", 1))
        (root / "evil").symlink_to(victim)
        (root / "real" / "side.jsonl").symlink_to(victim / "main.jsonl")
        # Refused, naming the link (D12), not a vague I/O error.
        for call in (store.append(ev("evil", 1)), store.read("evil")):
            with pytest.raises(CorruptLog, match="symbolic link") as info:
                await call
            assert info.value.path == str(root / "evil")
        with pytest.raises(CorruptLog, match="symbolic link") as info:
            await store.create_branch("real", "side")
        assert info.value.path == str(root / "real" / "side.jsonl")
        assert await store.list_sessions() == ["real"]
        assert await store.read("real") == [(await store.read("real"))[0]]
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == snapshot


async def test_record_size_limit(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, max_record_size=2000) as store:
        await store.append(ev("s1", 1, data="x" * 1500))
        with pytest.raises(InvalidEvent, match="max_record_size"):
            await store.append(ev("s1", 2, data="x" * 2000))
        with pytest.raises(InvalidEvent):
            await store.append_batch([ev("s1", 2), ev("s1", 3, data="x" * 2000)])
        assert await store.head("s1") == 1
        with pytest.raises(InvalidEvent):
            await store.append(ev("big", 1, data="x" * 2000))
        assert await store.list_sessions() == ["s1"]
    async with FileEventStore(tmp_path / "default") as store:
        with pytest.raises(InvalidEvent):
            await store.append(ev("s1", 1, data="x" * (1 << 20)))
        assert await store.list_sessions() == []


_hostile = st.one_of(
    st.sampled_from(["..", "../x", "a/../b", "x" * 129, "x" * 300, "a\x00b", "/etc", "é", "."]),
    st.text(max_size=300),
    st.builds(lambda s: "../" + s, st.text(max_size=20)),
    st.builds(lambda s: "a\x00" + s, st.text(max_size=20)),
    st.builds(lambda s: s * 300, st.sampled_from(["a", "é", "日"])),
).filter(lambda value: not is_valid_identifier(value))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=_hostile)
def test_hostile_identifiers_create_nothing(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "store"

    async def attempt() -> None:
        async with FileEventStore(root) as store:
            for call in (
                lambda: store.append(EventRecord(bad, "main", 1, "m")),
                lambda: store.append(EventRecord("ok", bad, 1, "m")),
                lambda: store.read(bad),
                lambda: store.read("ok", bad),
                lambda: store.head(bad),
                lambda: store.create_branch("ok", bad),
                lambda: store.create_branch(bad, "b"),
                lambda: store.merge_branch("ok", bad, "main"),
                lambda: store.list_branches(bad),
            ):
                with pytest.raises(InvalidIdentifier):
                    await call()

    asyncio.run(attempt())
    assert sorted(p.name for p in root.iterdir()) == [".lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


# -- one writer, many readers ------------------------------------------------------------


async def test_second_writer_in_this_process_is_refused(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as store:
        other = FileEventStore(tmp_path)
        with pytest.raises(StoreLocked) as info:
            await other.open()
        assert info.value.path == str(tmp_path / ".lock")
        await other.close()
        await store.append(ev("s1", 1))
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 1


_TRY_OPEN = textwrap.dedent(
    """
    import asyncio, sys
    from eventstore import FileEventStore, StoreLocked

    async def main():
        try:
            async with FileEventStore(sys.argv[1]) as store:
                print("opened", await store.head("s1"))
        except StoreLocked:
            print("locked")

    asyncio.run(main())
    """
)


def _try_open(root: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", _TRY_OPEN, str(root)], capture_output=True, env=env, check=True
    )
    return done.stdout.decode().strip()


async def test_writer_in_another_process_is_refused(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s1", 1))
        assert await asyncio.to_thread(_try_open, tmp_path) == "locked"
    assert await asyncio.to_thread(_try_open, tmp_path) == "opened 1"


async def test_read_only_store_beside_the_writer(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as writer:
        await writer.append(ev("s1", 1))
        async with FileEventStore(tmp_path, read_only=True) as reader:
            assert await reader.head("s1") == 1
            for call in (
                lambda: reader.append(ev("s1", 2)),
                lambda: reader.append_batch([ev("s1", 2)]),
                lambda: reader.create_branch("s1", "alt"),
                lambda: reader.merge_branch("s1", "alt", "main"),
            ):
                with pytest.raises(ReadOnlyStore):
                    await call()
            # Heads come from the files, not a cache: the writer's appends show.
            await writer.append_batch([ev("s1", 2), ev("s1", 3)])
            await writer.create_branch("s1", "alt", fork_sequence=2)
            assert await reader.head("s1") == 3
            assert [r.sequence for r in await reader.read("s1")] == [1, 2, 3]
            assert [b.branch_id for b in await reader.list_branches("s1")] == ["alt", "main"]
            await writer.append(ev("s1", 3, branch="alt"))
            assert await reader.head("s1", "alt") == 3
            assert await reader.list_sessions() == ["s1"]


async def test_read_only_store_leaves_a_torn_tail_alone(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as writer:
        await writer.append_batch([ev("s1", 1), ev("s1", 2)])
    path = tmp_path / "s1" / "main.jsonl"
    data = path.read_bytes() + b'{"session_id":"s1","bra'
    path.write_bytes(data)
    async with FileEventStore(tmp_path, read_only=True) as reader:
        assert await reader.head("s1") == 2
        assert len(await reader.read("s1")) == 2
    assert path.read_bytes() == data
    assert not (tmp_path / "s1" / "main.jsonl.torn").exists()


_APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from eventstore import EventRecord, FileEventStore

    async def main(root):
        async with FileEventStore(root) as store:
            for n in range(1, 31):
                await store.append(EventRecord.new("s1", "main", n, "message", {"n": n}))

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_follower_sees_events_appended_by_another_process(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    async with FileEventStore(tmp_path, read_only=True) as reader:
        seen: list[int] = []

        async def follow() -> None:
            async for record in reader.follow("s1", poll_interval=0.01):
                seen.append(record.data["n"])
                if record.sequence == 30:
                    return

        follower = asyncio.create_task(follow())
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _APPENDER,
            str(tmp_path),
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert await child.wait() == 0
        await asyncio.wait_for(follower, 30)
        assert seen == list(range(1, 31))
        resumed = reader.follow("s1", after_sequence=28)
        assert [(await anext(resumed)).sequence for _ in range(2)] == [29, 30]
        await resumed.aclose()


# -- lifecycle --------------------------------------------------------------------------


async def test_close_flushes_pending_appends(tmp_path: Path) -> None:
    store = FileEventStore(tmp_path)
    await store.open()
    await store.append(ev("s1", 1))
    tasks = [asyncio.create_task(store.append(ev("s1", n))) for n in range(2, 12)]
    await asyncio.sleep(0)  # every append has handed its write to the I/O thread
    await store.close()
    assert [t.result().sequence for t in tasks] == list(range(2, 12))
    with pytest.raises(StoreClosed):
        await store.append(ev("s1", 12))
    with pytest.raises(StoreClosed):
        await store.head("s1")
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 11


async def test_unclosed_store_warns_and_lets_go_of_the_root(tmp_path: Path) -> None:
    store = FileEventStore(tmp_path)
    await store.open()
    await store.append(ev("s1", 1))
    with pytest.warns(ResourceWarning, match="never closed"):
        del store
        gc.collect()
    async with FileEventStore(tmp_path) as store:
        assert await store.head("s1") == 1


async def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        FileEventStore(tmp_path, durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FileEventStore(tmp_path, max_record_size=0)
    with pytest.raises(StorageError):
        await FileEventStore(tmp_path / "missing", read_only=True).open()
    async with FileEventStore(tmp_path, durability="write") as store:
        await store.append(ev("s1", 1))
        assert "write" in repr(store)
    stats = store.statistics()
    assert msgspec.structs.asdict(stats)["writes"] >= 1


async def test_close_during_first_appends_never_hangs(tmp_path: Path) -> None:
    store = FileEventStore(tmp_path)
    await store.open()
    tasks = [asyncio.create_task(store.append(ev(f"new{n}", 1))) for n in range(20)]
    await asyncio.sleep(0)  # each is somewhere in its first append's several steps
    await store.close()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    assert all(isinstance(r, EventRecord | StoreClosed) for r in results), results
    done = {r.session_id for r in results if isinstance(r, EventRecord)}
    async with FileEventStore(tmp_path) as store:
        for session in done:
            assert await store.head(session) == 1
