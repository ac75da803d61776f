"""The one thread that owns the file store's blocking I/O, with group commit.

Coroutines put work on a queue and await a future (aiosqlite's design). The
thread drains *everything* pending each round, writes each file's appends with
one ``pwrite`` and makes the round durable with one sync, so concurrent appends
across sessions share the cost of an fsync. Results go back to each event loop
with one ``call_soon_threadsafe`` per round.

One exception: without syncs (``durability="write"``) an append to a file the
thread already has open is written on the loop thread itself when nothing is
queued or undelivered (:meth:`Writer.write`): one ``pwrite`` to the feed index
and one to the log, a few microseconds into the page cache, where the hop to
the thread and back costs tens. The thread's lock keeps the two apart; work
still queued or undelivered keeps the queue's order, so positions and
deliveries stay in order. Opening and creating files, and every sync, stay on
the thread.

Every system call goes through a :class:`FileOps` object: the seam tests use to
inject ``ENOSPC`` or ``EIO`` at any write or sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import queue
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .._errors import StorageError, StoreClosed

__all__ = ("DIRECTORY", "NOFOLLOW", "FileOps", "Writer", "storage_error")

#: ``open`` flags every module of the file store uses (0 where the system lacks them).
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = NOFOLLOW
_DIRECTORY = DIRECTORY

#: ``done(error)`` runs on the loop before the caller's future is resolved.
Done = Callable[[BaseException | None], None]


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _load_syncfs()


def storage_error(exc: OSError, what: str) -> StorageError:
    """Translate an :class:`OSError` into the store's :class:`StorageError`."""
    return StorageError(f"{what}: {exc.strerror or exc}", exc.errno)


class FileOps:
    """The system calls the file store makes, one method each.

    The default implementation calls :mod:`os`. Tests subclass it and raise
    ``OSError(errno.ENOSPC, ...)`` from :meth:`pwrite`, :meth:`fsync` or
    :meth:`syncfs` to check that a failed write loses nothing acknowledged.
    """

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        return os.open(path, flags | _CLOEXEC, mode, dir_fd=dir_fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def has_syncfs(self) -> bool:
        """Whether :meth:`syncfs` can flush a whole file system in one call."""
        return _syncfs is not None

    def syncfs(self, fd: int) -> None:
        """Flush every dirty file of the file system holding ``fd`` (Linux ``syncfs``)."""
        if _syncfs is None:  # pragma: no cover - guarded by has_syncfs
            raise OSError(errno.ENOSYS, "syncfs is not available")
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def mkdir(self, path: str, mode: int = 0o700, *, dir_fd: int | None = None) -> None:
        os.mkdir(path, mode, dir_fd=dir_fd)

    def replace(self, src: str, dst: str, *, dir_fd: int) -> None:
        os.replace(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def unlink(self, path: str, *, dir_fd: int | None = None) -> None:
        os.unlink(path, dir_fd=dir_fd)

    def rmdir(self, path: str, *, dir_fd: int | None = None) -> None:
        os.rmdir(path, dir_fd=dir_fd)

    def rename(self, src: str, dst: str, *, dir_fd: int) -> None:
        """Rename within one directory, refusing to replace ``dst`` (a tombstone is new)."""
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


class _Handle:
    __slots__ = ("dirty", "fd", "new", "size")

    def __init__(self, fd: int, size: int, new: bool) -> None:
        self.fd = fd
        #: Bytes acknowledged good; a failed write is cut back to it.
        self.size = size
        #: Created by this store and its directory entry not yet synced.
        self.new = new
        #: A rollback truncate failed and must be retried before the next write.
        self.dirty = False


class _Item:
    __slots__ = ("done", "future", "loop", "order")

    def __init__(self, loop: asyncio.AbstractEventLoop, done: Done | None) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.done = done
        #: Place in the queue: results are delivered in this order.
        self.order = 0


class _Write(_Item):
    __slots__ = ("data", "directory", "feed", "name", "offset")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        done: Done | None,
        directory: str,
        name: str,
        offset: int,
        data: bytes,
        feed: Any,
    ) -> None:
        super().__init__(loop, done)
        self.directory = directory
        self.name = name
        self.offset = offset
        self.data = data
        #: The write's part of the feed index (a ``_feed.FeedPart``), if any.
        self.feed = feed


class _Call(_Item):
    __slots__ = ("args", "fn")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Done | None = None,
    ) -> None:
        super().__init__(loop, done)
        self.fn = fn
        self.args = args


class _Stop(_Item):
    """End the thread after this round; ``loop`` is ``None`` when nobody waits."""

    __slots__ = ()

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if loop is not None:
            super().__init__(loop, None)
        else:
            self.done = None


_Result = tuple[_Item, Any, BaseException | None]


class _Syncer:
    """A second thread that syncs the feed index while the I/O thread syncs the logs.

    Two ``fsync`` calls in flight at once join one journal commit on ext4
    (measured: a round of one log and the index ~1.6-2.5x faster than two
    ``fsync`` calls in a row), without the cost of a ``syncfs``, which flushes
    every dirty file of the file system, other programs' too.
    """

    def __init__(self) -> None:
        self._go = threading.Semaphore(0)
        self._finished = threading.Semaphore(0)
        self._fn: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="eventstore-file-sync", daemon=True)
        self._thread.start()

    def start(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._error = None
        self._go.release()

    def wait(self) -> BaseException | None:
        """Wait for the call :meth:`start` began; return what it raised, if anything."""
        self._finished.acquire()
        return self._error

    def stop(self) -> None:
        self._fn = None
        self._go.release()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._go.acquire()
            fn = self._fn
            if fn is None:
                return
            try:
                fn()
            except BaseException as exc:  # handed to the I/O thread
                self._error = exc
            self._fn = None
            self._finished.release()


class Writer:
    """Owner of every file descriptor of one store, run by one daemon thread.

    :param ops: the system-call seam.
    :param sync: make each round durable (``durability="fsync"``).
    :param sync_fd: a descriptor on the store's file system for ``syncfs``.
    :param read_only: open files read-only and never create them.
    :param max_open: descriptors kept open between rounds (least recently used go).
    :param syncfs_threshold: a round touching this many files syncs the whole file
        system once instead of fsyncing each (ext4 then commits one journal
        transaction instead of one per file).
    """

    def __init__(
        self,
        ops: FileOps,
        *,
        sync: bool,
        sync_fd: int | None,
        read_only: bool,
        max_open: int = 256,
        syncfs_threshold: int = 4,
    ) -> None:
        self.ops = ops
        self._sync = sync
        self._sync_fd = sync_fd
        self._read_only = read_only
        self._max_open = max_open
        self._syncfs_threshold = syncfs_threshold if ops.has_syncfs() else sys.maxsize
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        #: Held by the thread for each round; the loop takes it for an inline write.
        self._busy = threading.Lock()
        #: Items queued and not yet delivered back to their loop (loop side only).
        self._unsettled = 0
        self._handles: OrderedDict[str, _Handle] = OrderedDict()
        self._thread = threading.Thread(target=self._run, name="eventstore-file-io", daemon=True)
        self._stopped = False
        #: Syncs the feed index beside the logs' syncs (started on the first such round).
        self._syncer: _Syncer | None = None
        #: The feed index (a ``_feed.FeedFile``) each round's entries go to, once open.
        self.feed: Any = None
        #: Runs on the loop after a round's ``done`` callbacks, before its futures resolve.
        self.on_round: Callable[[], None] | None = None
        #: Counters for tests and ``statistics``: rounds, writes, file syncs.
        self.rounds = 0
        self.writes = 0
        self.syncs = 0

    # -- loop side -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def write(
        self, directory: str, name: str, offset: int, data: bytes, done: Done, feed: Any = None
    ) -> asyncio.Future[None] | None:
        """Queue ``data`` for ``directory/name`` at ``offset`` (which must be its good size).

        ``done`` runs on the loop with the outcome even if the caller was
        cancelled, so the caller's state never disagrees with the file.
        ``feed`` (a ``_feed.FeedPart``) goes to the feed index in the same
        round, before the data, and leaves it again if the write fails.

        :returns: the future to await; ``None`` when the write was made on
            this thread already (no syncs, the file open, nothing queued):
            ``done`` and :attr:`on_round` have run, the data is in the page cache.
        :raises StorageError: if that inline write failed (``done`` saw the
            error first; the file and the feed index are cut back).
        """
        self._check_running()
        if not self._sync and not self._unsettled and self._busy.acquire(blocking=False):
            try:
                handle = self._handles.get(f"{directory}/{name}")
                ready = (
                    handle is not None
                    and not handle.dirty
                    and handle.size == offset
                    and (self.feed is None or self.feed.fd is not None or feed is None)
                )
                if ready:
                    assert handle is not None
                    error: BaseException | None
                    try:
                        error = self._write_inline(handle, directory, name, data, feed)
                    except BaseException as exc:  # a bug: ``done`` must still hear of it
                        error = exc
            finally:
                self._busy.release()
            if ready:
                done(error)
                if self.on_round is not None:
                    self.on_round()
                if error is not None:
                    raise error
                return None
        item = _Write(asyncio.get_running_loop(), done, directory, name, offset, data, feed)
        self._unsettled += 1
        self._queue.put(item)
        return item.future

    def _write_inline(
        self, handle: _Handle, directory: str, name: str, data: bytes, part: Any
    ) -> StorageError | None:
        """One round of one write, on the calling thread (no sync): as :meth:`_commit`."""
        self.rounds += 1
        feed = self.feed
        region = None
        if feed is not None and part is not None:
            try:
                region = feed.append((part,))
            except OSError as exc:
                return storage_error(exc, "write the feed index")
        try:
            self._pwrite_all(handle, data)
        except OSError as exc:
            error = storage_error(exc, f"write {directory}/{name}")
            try:
                self._truncate(handle)
            except OSError:
                handle.dirty = True
            if region is not None:
                feed.keep(region, (), False)
            return error
        handle.size += len(data)
        self.writes += 1
        return None

    def _check_running(self) -> None:
        # Work queued behind the stop would wait forever for a finished thread.
        if self._stopped:
            raise StoreClosed()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the I/O thread, between rounds of writes."""
        self._check_running()
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        item = _Call(asyncio.get_running_loop(), fn, args)
        self._unsettled += 1
        self._queue.put(item)
        return item.future

    def call_done(self, done: Done, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """:meth:`call`, with ``done(error)`` run on the loop before the future resolves.

        For a call that appends to the feed index (new sessions' first events):
        the writes queued before it are committed first, so the index keeps
        position order within a round.
        """
        self._check_running()
        item = _Call(asyncio.get_running_loop(), fn, args, done)
        self._unsettled += 1
        self._queue.put(item)
        return item.future

    async def stop(self) -> None:
        """Finish everything queued, close every descriptor, end the thread."""
        if self._stopped:
            return
        self._stopped = True
        item = _Stop(asyncio.get_running_loop())
        self._queue.put(item)
        await item.future
        await asyncio.to_thread(self._thread.join)

    def stop_nowait(self) -> None:
        """Stop without waiting (for a store garbage-collected while open)."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(_Stop(None))

    # -- I/O thread ------------------------------------------------------------

    def handle(self, directory: str, name: str, *, create: bool = False) -> _Handle | None:
        """The cached descriptor of a file, opened without following symlinks.

        :returns: ``None`` if the file does not exist and ``create`` is false.
        """
        key = f"{directory}/{name}"
        found = self._handles.get(key)
        if found is not None:
            self._handles.move_to_end(key)
            return found
        ops = self.ops
        try:
            dir_fd = ops.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
        except FileNotFoundError:
            if create:
                raise
            return None
        try:
            flags = (os.O_RDONLY if self._read_only else os.O_RDWR) | _NOFOLLOW
            new = False
            try:
                fd = ops.open(name, flags, dir_fd=dir_fd)
            except FileNotFoundError:
                if not create:
                    return None
                fd = ops.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dir_fd)
                new = True
        finally:
            ops.close(dir_fd)
        created = _Handle(fd, ops.fstat(fd).st_size, new)
        self._handles[key] = created
        return created

    def forget(self, directory: str, name: str | None = None) -> None:
        """Close the cached descriptors of one file, or of every file in ``directory``.

        Before the file or directory is renamed or removed, so a new file of the
        same name is never written through a descriptor of the old one.
        """
        prefix = f"{directory}/"
        keys = [f"{prefix}{name}"] if name is not None else list(self._handles)
        for key in keys:
            if key.startswith(prefix) and (handle := self._handles.pop(key, None)) is not None:
                self.ops.close(handle.fd)

    def write_now(
        self,
        directory: str,
        name: str,
        data: bytes,
        *,
        sync_directory: bool = True,
        sync: bool | None = None,
    ) -> None:
        """Append ``data`` to ``directory/name`` right away, synced if the store syncs.

        For a :meth:`call` whose write must be one step with what follows it
        (a new branch's first events and the manifest naming it). A failure
        cuts the file back, as a failed round does.

        :param sync_directory: sync the directory entry of a file this created;
            ``False`` when the caller syncs that directory next anyway.
        :param sync: ``False``: the caller makes bytes and entry durable itself
            (one ``syncfs`` for several files); default: as the store syncs.
        :raises OSError: if the write or the sync fails.
        """
        found = self.handle(directory, name, create=True)
        assert found is not None
        handle = found
        if handle.dirty:
            self._truncate(handle)
        try:
            self._pwrite_all(handle, data)
            if self._sync if sync is None else sync:
                self.syncs += 1
                self.ops.fsync(handle.fd)
                if handle.new and sync_directory:
                    self._sync_directory(directory)
            handle.new = handle.new and sync is None and not self._sync
        except OSError:
            try:
                self._truncate(handle)
            except OSError:
                handle.dirty = True
            raise
        handle.size += len(data)
        self.writes += 1

    def _run(self) -> None:
        # One frame per round: the thread keeps no reference to a finished
        # round's items (and the stores their callables hold) while it waits.
        while self._next_round():
            pass

    def _next_round(self) -> bool:
        """Run one round of everything queued; ``False`` once told to stop."""
        items = [self._queue.get()]
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for order, item in enumerate(items):
            item.order = order
        stops = [item for item in items if isinstance(item, _Stop)]
        with self._busy:
            results = self._round([item for item in items if not isinstance(item, _Stop)])
            if stops:
                self._close_all()
        # Delivered once the lock is free: a caller resumed by it may write inline.
        self._post(results)
        if stops:
            self._post([(item, None, None) for item in stops if hasattr(item, "future")])
            return False
        return True

    def _round(self, items: list[_Item]) -> list[_Result]:
        """Run one round's calls and writes; return the results to deliver."""
        self.rounds += 1
        results: list[_Result] = []
        writes: dict[tuple[str, str], list[_Write]] = {}
        for item in items:
            if isinstance(item, _Write):
                writes.setdefault((item.directory, item.name), []).append(item)
            else:
                assert isinstance(item, _Call)
                if item.done is not None and writes:
                    # A call with a ``done`` writes records (a new root's first
                    # events) whose positions follow the writes queued before
                    # it: those go to the feed index first, so it stays in
                    # position order.
                    self._commit(writes, results)
                    writes = {}
                try:
                    results.append((item, item.fn(*item.args), None))
                except OSError as exc:
                    results.append((item, None, storage_error(exc, "file store I/O failed")))
                except BaseException as exc:  # handed to the caller, not lost in the thread
                    results.append((item, None, exc))
        if writes:
            self._commit(writes, results)
        for _ in range(len(self._handles) - self._max_open):
            key, old = self._handles.popitem(last=False)
            if old.dirty:
                # Its size is the only record of where the good bytes end.
                self._handles[key] = old
                continue
            self.ops.close(old.fd)
        return results

    def _post(self, results: list[_Result]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        # In queue order, which is the order of the positions the writes carry.
        for result in sorted(results, key=lambda result: result[0].order):
            by_loop.setdefault(result[0].loop, []).append(result)
        for loop, batch in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._deliver, batch)

    def _commit(self, writes: dict[tuple[str, str], list[_Write]], results: list[_Result]) -> None:
        planned: list[tuple[_Handle, str, list[_Write], bytes, int]] = []
        for (directory, name), items in writes.items():
            path = f"{directory}/{name}"
            try:
                found = self.handle(directory, name, create=True)
                assert found is not None
                handle = found
                if handle.dirty:
                    self._truncate(handle)
            except OSError as exc:
                error = storage_error(exc, f"cannot open {path}")
                results.extend((item, None, error) for item in items)
                continue
            end = handle.size
            chunks: list[bytes] = []
            accepted: list[_Write] = []
            for item in items:
                if item.offset != end:
                    # Built on a write that failed: its sequences no longer follow.
                    lost = StorageError(f"an earlier write to {path} failed")
                    results.append((item, None, lost))
                    continue
                chunks.append(item.data)
                end += len(item.data)
                accepted.append(item)
            if accepted:
                planned.append((handle, path, accepted, b"".join(chunks), end))
        # The feed index first: after a kill every line on disk has its entry.
        feed = self.feed
        region = None
        if feed is not None:
            parts = sorted(
                (item for entry in planned for item in entry[2] if item.feed is not None),
                key=lambda item: item.order,
            )
            try:
                region = feed.append(item.feed for item in parts)
            except OSError as exc:
                error = storage_error(exc, "write the feed index")
                for _, _, accepted, _, _ in planned:
                    results.extend((item, None, error) for item in accepted)
                return
        staged: list[tuple[_Handle, str, list[_Write], int]] = []
        for handle, path, accepted, data, end in planned:
            try:
                self._pwrite_all(handle, data)
            except OSError as exc:
                self._rollback(handle, accepted, results, storage_error(exc, f"write {path}"))
                continue
            staged.append((handle, path, accepted, end))
        if self._sync and staged:
            staged = self._sync_round(staged, results, region is not None)
        if region is not None:
            kept = [item for _, _, accepted, _ in staged for item in accepted]
            if len(kept) < sum(len(entry[2]) for entry in planned):
                # Some writes failed: their entries leave the index again.
                kept.sort(key=lambda item: item.order)
                feed.keep(region, [item.feed for item in kept if item.feed is not None], self._sync)
        for handle, _, accepted, end in staged:
            handle.size = end
            self.writes += len(accepted)
            results.extend((item, None, None) for item in accepted)

    def _sync_round(
        self,
        staged: list[tuple[_Handle, str, list[_Write], int]],
        results: list[_Result],
        feed: bool = False,
    ) -> list[tuple[_Handle, str, list[_Write], int]]:
        ops = self.ops
        if len(staged) + feed >= self._syncfs_threshold and self._sync_fd is not None:
            try:
                self.syncs += 1
                ops.syncfs(self._sync_fd)
            except OSError as exc:
                error = storage_error(exc, "syncfs")
                for handle, _, accepted, _ in staged:
                    self._rollback(handle, accepted, results, error)
                return []
            for handle, *_ in staged:
                handle.new = False
            if feed:
                self.feed.streams_dirty = False
            return staged
        syncer = None
        if feed:
            self.syncs += 1
            # In flight beside the logs' syncs: the feed index's entries were
            # written before the lines, so the journal commits them no later.
            syncer = self._syncer
            if syncer is None:
                syncer = self._syncer = _Syncer()
            syncer.start(self.feed.sync)
        kept = []
        try:
            for entry in staged:
                handle, path, accepted, _ = entry
                try:
                    self.syncs += 1
                    ops.fsync(handle.fd)
                    if handle.new:
                        self._sync_directory(path.rpartition("/")[0])
                        handle.new = False
                except OSError as exc:
                    error = storage_error(exc, f"fsync {path}")
                    self._rollback(handle, accepted, results, error)
                    continue
                kept.append(entry)
        finally:
            # Whatever happened here, the feed index's sync ends before the round does.
            failed = None if syncer is None else syncer.wait()
        if failed is not None:
            if not isinstance(failed, OSError):
                raise failed
            error = storage_error(failed, "fsync the feed index")
            for handle, _, accepted, _ in kept:
                self._rollback(handle, accepted, results, error)
            return []
        return kept

    def _sync_directory(self, directory: str) -> None:
        fd = self.ops.open(directory, os.O_RDONLY | _DIRECTORY | _NOFOLLOW)
        try:
            self.ops.fsync(fd)
        finally:
            self.ops.close(fd)

    def _pwrite_all(self, handle: _Handle, data: bytes) -> None:
        written = self.ops.pwrite(handle.fd, data, handle.size)
        if written == len(data):
            return
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = memoryview(data)[written:]
        offset = handle.size + written
        while view:
            written = self.ops.pwrite(handle.fd, view, offset)
            if written <= 0:
                raise OSError(errno.EIO, "short write")
            view = view[written:]
            offset += written

    def _rollback(
        self,
        handle: _Handle,
        accepted: list[_Write],
        results: list[_Result],
        error: StorageError,
    ) -> None:
        # Cut the file back to its last acknowledged byte so no partial line
        # survives; if even that fails, retry before the next write touches it.
        try:
            self._truncate(handle)
        except OSError:
            handle.dirty = True
        results.extend((item, None, error) for item in accepted)

    def _truncate(self, handle: _Handle) -> None:
        self.ops.ftruncate(handle.fd, handle.size)
        if self._sync:
            # Make the cut durable too, or a crash could bring back bytes the
            # caller was told were not written.
            self.ops.fsync(handle.fd)
        handle.dirty = False

    def _close_all(self) -> None:
        if self._syncer is not None:
            self._syncer.stop()
            self._syncer = None
        if self.feed is not None:
            self.feed.close()
        while self._handles:
            _, handle = self._handles.popitem()
            self.ops.close(handle.fd)

    def _deliver(self, batch: list[_Result]) -> None:
        """On the loop: a round's ``done`` callbacks, :attr:`on_round`, then its futures."""
        self._unsettled -= sum(not isinstance(item, _Stop) for item, _, _ in batch)
        _deliver(batch, self.on_round)


def _deliver(batch: list[_Result], on_round: Callable[[], None] | None) -> None:
    for item, _, error in batch:
        if item.done is not None:
            item.done(error)
    if on_round is not None:
        on_round()
    for item, value, error in batch:
        future = item.future
        if future.done():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
