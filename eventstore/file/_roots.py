"""New sessions' first events, written in batches: two syncs per batch, not four each.

A session's first append writes ``main.jsonl`` and then the manifest naming it
(see ``FileEventStore``). Done one by one that costs a sync of the new
directory, of the file, of the manifest's temporary file and of the directory
after the rename. Here every first append waiting when the I/O thread comes to
them goes in one step: each one's directory, events and temporary manifest are
written unsynced, one ``syncfs`` makes all of them durable, the manifests are
renamed into place, and a second ``syncfs`` makes the renames durable. A kill
anywhere leaves each session new (no manifest: its file is an orphan, set
aside) or created, and none is acknowledged before the second sync returns.
"""

from __future__ import annotations

import asyncio
import threading

from .._errors import StorageError
from ._manifest import Manifest, Staged, commit_manifest, discard_manifest, stage_manifest
from ._tail import prepare_root
from ._writer import Writer, storage_error

__all__ = ("RootBatch",)


class _Root:
    __slots__ = ("data", "directory", "future", "loop", "manifest", "name", "staged")

    def __init__(self, directory: str, name: str, data: bytes, manifest: Manifest) -> None:
        self.directory = directory
        self.name = name
        self.data = data
        self.manifest = manifest
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()
        self.staged: Staged | None = None


class RootBatch:
    """Queues first appends of new sessions for the I/O thread (needs ``syncfs``)."""

    def __init__(self, writer: Writer, root_fd: int) -> None:
        self._writer = writer
        self._root_fd = root_fd
        self._queue: list[_Root] = []
        self._lock = threading.Lock()

    def submit(
        self, directory: str, name: str, data: bytes, manifest: Manifest
    ) -> asyncio.Future[None]:
        """Write ``data`` as the first events of ``directory/name``, then ``manifest``.

        The future fails with :class:`StorageError` if the disk did.
        """
        root = _Root(directory, name, data, manifest)
        with self._lock:
            self._queue.append(root)
            first = len(self._queue) == 1
        if first:
            self._writer.call(self._run)
        return root.future

    def _run(self) -> None:
        """On the I/O thread: everything queued so far, in one batch."""
        with self._lock:
            roots, self._queue = self._queue, []
        writer = self._writer
        ops = writer.ops
        staged: list[_Root] = []
        for root in roots:
            try:
                prepare_root(writer, self._root_fd, root.directory, root.name, sync=False)
                writer.write_now(root.directory, root.name, root.data, sync=False)
                root.staged = stage_manifest(
                    ops, self._root_fd, root.directory, root.manifest, sync=False
                )
            except (OSError, StorageError) as exc:
                _answer(root, exc)
            else:
                staged.append(root)
        if not staged:
            return
        try:
            writer.syncs += 1
            ops.syncfs(self._root_fd)
        except OSError as exc:
            for root in staged:
                assert root.staged is not None
                discard_manifest(ops, root.staged)
                _answer(root, exc)
            return
        renamed: list[_Root] = []
        for root in staged:
            assert root.staged is not None
            try:
                commit_manifest(ops, root.staged, sync=False)
            except OSError as exc:
                _answer(root, exc)
            else:
                renamed.append(root)
        error: OSError | None = None
        try:
            if renamed:
                writer.syncs += 1
                ops.syncfs(self._root_fd)
        except OSError as exc:
            error = exc
        for root in renamed:
            _answer(root, error)


def _answer(root: _Root, error: BaseException | None) -> None:
    if isinstance(error, OSError):
        error = storage_error(error, f"cannot create {root.directory}")
    root.loop.call_soon_threadsafe(_settle, root.future, error)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
