"""The file store's side of the issue-18 primitives: its lookup index (built from
disk, kept current, on read-only stores and evicted sessions), ``copy_session``
all or nothing under injected faults and crashes, and the record size limit."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import pytest

from eventstore import (
    MAIN,
    EventRecord,
    FileEventStore,
    InvalidEvent,
    StorageError,
)
from eventstore.file._erase import COPY_PREFIX

from ._file_helpers import FaultyOps


def ev(session: str, seq: int, branch: str = MAIN, key: str | None = None) -> EventRecord:
    metadata = {} if key is None else {"key": key}
    return EventRecord.new(session, branch, seq, "message", {"n": seq}, metadata=metadata)


class CopyFaults(FaultyOps):
    """:class:`FaultyOps` that can also fail ``mkdir``, ``open`` and ``rename``."""

    def mkdir(self, path: str, mode: int = 0o700, *, dir_fd: int | None = None) -> None:
        fault = self._check("mkdir")
        if fault is not None:
            raise OSError(fault[0], os.strerror(fault[0]))
        super().mkdir(path, mode, dir_fd=dir_fd)

    def rename(self, src: str, dst: str, *, dir_fd: int) -> None:
        fault = self._check("rename")
        if fault is not None:
            raise OSError(fault[0], os.strerror(fault[0]))
        super().rename(src, dst, dir_fd=dir_fd)


class Counting(FaultyOps):
    """Counts the bytes ``pread`` returns."""

    read = 0

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        data = super().pread(fd, size, offset)
        self.read += len(data)
        return data


class Crashed(FaultyOps):
    """Once ``crash()`` is called, every write, sync and rename fails: the process
    is gone as far as the disk can tell, and no clean-up reaches it."""

    dead = False

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.dead:
            raise OSError(errno.EIO, "crashed")
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        if self.dead:
            raise OSError(errno.EIO, "crashed")
        super().fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        if self.dead:
            raise OSError(errno.EIO, "crashed")
        super().ftruncate(fd, size)

    def unlink(self, path: str, *, dir_fd: int | None = None) -> None:
        if self.dead:
            raise OSError(errno.EIO, "crashed")
        super().unlink(path, dir_fd=dir_fd)

    def rmdir(self, path: str, *, dir_fd: int | None = None) -> None:
        if self.dead:
            raise OSError(errno.EIO, "crashed")
        super().rmdir(path, dir_fd=dir_fd)

    def rename(self, src: str, dst: str, *, dir_fd: int) -> None:
        if src.startswith(COPY_PREFIX):
            self.dead = True
        if self.dead:
            raise OSError(errno.EIO, "crashed")
        super().rename(src, dst, dir_fd=dir_fd)


async def source(store: FileEventStore) -> None:
    await store.append_batch([ev("src", n, key=f"k{n}") for n in range(1, 6)])
    await store.create_branch("src", "b", fork_sequence=3)
    await store.append_batch([ev("src", n, "b") for n in (4, 5)])


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(COPY_PREFIX))


# -- the lookup index ---------------------------------------------------------------


async def test_a_read_only_store_builds_and_follows_the_index(tmp_path: Path) -> None:
    async with (
        FileEventStore(tmp_path) as writer,
        FileEventStore(tmp_path, read_only=True) as reader,
    ):
        first = await writer.append_batch([ev("s", n, key=f"k{n}") for n in (1, 2, 3)])
        assert await reader.get_event("s", first[1].event_id) == first[1]
        assert await reader.get_by_key("s", "k3") == first[2]
        # The writer goes on: the reader's index catches up from the files.
        await writer.create_branch("s", "b", fork_sequence=2)
        on_b = await writer.append(ev("s", 3, "b", key="k3"))
        assert await reader.get_event("s", on_b.event_id) == on_b
        assert await reader.get_by_key("s", "k3") == on_b
        assert await reader.read_last("s", "b", limit=2) == [on_b, first[1]]
        assert await reader.read_at("s", "b", [3, 1]) == [on_b, first[0]]
        # A deleted branch, then a deleted and reborn session, are never found.
        await writer.delete_branch("s", "b")
        assert await reader.get_event("s", on_b.event_id) is None
        assert await reader.get_by_key("s", "k3") == first[2]
        await writer.delete_session("s")
        assert await reader.get_event("s", first[0].event_id) is None
        reborn = await writer.append(ev("s", 1, key="k3"))
        assert await reader.get_by_key("s", "k3") == reborn
        assert await reader.get_event("s", first[2].event_id) is None


async def test_lookups_with_sessions_evicted_from_the_cache(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, max_cached_sessions=1) as store:
        written = {
            s: await store.append_batch([ev(s, n, key=f"{s}-{n}") for n in (1, 2)])
            for s in ("a", "b", "c")
        }
        for _ in range(2):
            for session, records in written.items():
                assert await store.get_event(session, records[0].event_id) == records[0]
                assert await store.get_by_key(session, f"{session}-2") == records[1]
                assert await store.get_by_key(session, "a-2") == (
                    records[1] if session == "a" else None
                )
        assert store.statistics().cached_sessions <= 2


async def test_a_lookup_reads_only_what_is_new(tmp_path: Path) -> None:
    ops = Counting()
    async with FileEventStore(tmp_path, ops=ops) as store:
        records = await store.append_batch([ev("s", n) for n in range(1, 3001)])
        size = (tmp_path / "s" / "main.jsonl").stat().st_size
        await store.get_event("s", records[0].event_id)  # builds the index
        before = ops.read
        for record in records[::300]:
            assert await store.get_event("s", record.event_id) == record
        # Ten lookups: each reads around one record (a probe, a chunk), never the log.
        per_lookup = (ops.read - before) / 10
        later = await store.append(ev("s", 3001))
        before = ops.read
        assert await store.get_event("s", later.event_id) == later
        after_append = ops.read - before
    async with FileEventStore(tmp_path, ops=ops) as store:
        before = ops.read
        await store.get_event("s", records[0].event_id)
        build = ops.read - before
    assert build >= size
    assert per_lookup < size / 10
    assert after_append < size / 10


async def test_a_branch_made_again_is_indexed_afresh(tmp_path: Path) -> None:
    async with (
        FileEventStore(tmp_path) as store,
        FileEventStore(tmp_path, read_only=True) as reader,
    ):
        await store.append_batch([ev("s", n) for n in (1, 2)])
        await store.create_branch("s", "b")
        old = await store.append_batch([ev("s", n, "b", key="k") for n in (3, 4)])
        for lookups in (store, reader):
            assert await lookups.get_by_key("s", "k") == old[1]
        await store.delete_branch("s", "b")
        await store.create_branch("s", "b")
        new = await store.append_batch([ev("s", n, "b") for n in (3, 4, 5)])
        for lookups in (store, reader):
            assert await lookups.get_event("s", old[0].event_id) is None
            assert await lookups.get_by_key("s", "k") is None
            assert await lookups.get_event("s", new[2].event_id) == new[2]


# -- copy_session --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "skips"),
    [("pwrite", 6), ("fsync", 8), ("mkdir", 2), ("rename", 3)],
)
async def test_a_failed_copy_leaves_no_target(tmp_path: Path, step: str, skips: int) -> None:
    failures = 0
    for skip in range(skips):
        root = tmp_path / str(skip)
        ops = CopyFaults()
        async with FileEventStore(root, ops=ops) as store:
            await source(store)
            head = await store.feed_head()
            ops.arm(step, errno.EIO, skip=skip)
            try:
                await store.copy_session("src", "dst")
            except StorageError as exc:
                failures += 1
                assert exc.errno == errno.EIO
                assert await store.list_sessions() == ["src"]
                assert await store.list_branches("dst") == []
                assert await store.read("dst") == []
                assert await store.get_event("dst", "x") is None
                assert {r.session_id for r in await store.read_feed()} == {"src"}
                assert await store.feed_head() == head
                assert leftovers(root) == []
                assert not (root / "dst").exists()
                # The store goes on, and the same copy succeeds now.
                ops._armed.clear()
                infos = await store.copy_session("src", "dst")
                assert [i.branch_id for i in infos] == ["b", MAIN]
            copied = {b: await store.read("dst", b) for b in ("b", MAIN)}
            feed = await store.read_feed()
        async with FileEventStore(root) as store:
            assert {b: await store.read("dst", b) for b in ("b", MAIN)} == copied
            assert await store.read_feed() == feed
            assert [r.session_id for r in feed].count("dst") == 7
    assert failures, f"no {step} failed: the copy makes fewer calls than armed"


async def test_a_crash_before_the_rename_leaves_no_target(tmp_path: Path) -> None:
    ops = Crashed()
    store = FileEventStore(tmp_path, ops=ops, durability="write")
    await store.open()
    await source(store)
    feed = await store.read_feed()
    with pytest.raises(StorageError):
        await store.copy_session("src", "dst")
    assert leftovers(tmp_path)  # nothing could clean up after the "crash"
    with contextlib.suppress(StorageError):
        await store.close()
    async with FileEventStore(tmp_path) as store:
        assert leftovers(tmp_path) == []
        assert await store.list_sessions() == ["src"]
        assert await store.read("dst") == []
        assert await store.read_feed() == feed
        later = await store.append(ev("src", 6))
        assert (await store.read_feed())[-1] == later
        await store.copy_session("src", "dst")
        assert len(await store.read("dst")) == 6


async def test_copy_over_a_directory_never_acknowledged(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path) as store:
        await source(store)
    (tmp_path / "dst").mkdir()  # a crashed first append's directory, no manifest
    async with FileEventStore(tmp_path) as store:
        await store.copy_session("src", "dst", branch_id="b")
        assert [r.sequence for r in await store.read("dst")] == [1, 2, 3, 4, 5]


async def test_a_copy_is_read_by_a_read_only_store(tmp_path: Path) -> None:
    async with (
        FileEventStore(tmp_path) as writer,
        FileEventStore(tmp_path, read_only=True) as reader,
    ):
        await source(writer)
        assert await reader.get_by_key("dst", "k1") is None
        await writer.copy_session("src", "dst")
        found = await reader.get_by_key("dst", "k1")
        assert found is not None and found.session_id == "dst"
        assert await reader.read("dst", "b") == await writer.read("dst", "b")


# -- record size ----------------------------------------------------------------------


async def test_a_record_above_max_record_size_says_how_to_fix_it(tmp_path: Path) -> None:
    async with FileEventStore(tmp_path, max_record_size=300) as store:
        record = EventRecord.new("s", MAIN, 1, "blob", {"b64": "A" * 1000})
        with pytest.raises(InvalidEvent) as caught:
            await store.append(record)
        message = str(caught.value)
        assert "above max_record_size 300 (the file store's limit" in message
        assert "FileEventStore(..., max_record_size=2048)" in message
        size = int(message.split(" is ")[1].split(" ")[0])
        assert 1000 < size <= 2048
        assert await store.read("s") == []
