"""Checking a file store's files, changing nothing: :func:`verify`.

A writer store repairs a torn tail when it opens a branch, so ``verify`` opens
no store at all: it reads ``<root>/<session>/<branch>.jsonl`` and the manifest
itself, read-only, and reports each problem with its file and line. It can run
while a writer appends (a record being written at that moment may show up as a
torn tail; run it again).

The rules are the store's own, from the modules the store opens files with:
the manifest is decoded and checked by :mod:`eventstore.file._manifest`, a
branch file no manifest names by :func:`eventstore.file._leftover.leftover_problem`
(a crash's leftover, or proof the manifest was lost), the batch marker by
:mod:`eventstore.file._batch`, a head short of the manifest's by
:func:`eventstore.file._tail.lost_events`; a symbolic link is reported, never
followed.

Damage needs a look. A note does not: ``.torn`` files a repair kept, and the
leftover of a new branch's first write that a crash or a full disk interrupted
before the manifest named it (never acknowledged, never shown, moved aside by
the writer that next loads the session).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

from .._codec import decode_record
from .._errors import CorruptLog
from .._ids import check_identifier, is_valid_identifier
from ._batch import batch_end
from ._branch_log import BRANCH_LOG, apply_log, read_log
from ._leftover import BRANCH_SUFFIX, LINK_REFUSED, leftover_problem
from ._manifest import MANIFEST, BranchMeta, Manifest, decode_manifest, manifest_problems
from ._tail import TORN_SUFFIX, lost_events
from ._writer import DIRECTORY, NOFOLLOW, FileOps

__all__ = ("VerifyProblem", "VerifyProgress", "VerifyReport", "verify")

#: A branch file no manifest names that holds one first write, cut short or
#: whole: a kill or a full disk struck before the manifest named it.
LEFTOVER = (
    "the leftover of a first write that a crash or a full disk interrupted; it was "
    "never acknowledged, the store does not show it, and a writer moves it to a .torn "
    "file when it next loads the session"
)
_MOVED_ASIDE = "a writer opening the store moves it aside to a .torn file"


class VerifyProblem(msgspec.Struct, frozen=True):
    """One thing found, where it is (``line`` 0: the file as a whole).

    ``damage`` is ``False`` for a note: something a writer sets aside by itself.
    """

    path: str
    line: int
    reason: str
    damage: bool = True

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.reason}"


class VerifyReport(msgspec.Struct, frozen=True):
    """What :func:`verify` looked at and what it found, damage and notes in file order."""

    sessions: int
    branches: int
    records: int
    problems: tuple[VerifyProblem, ...]

    @property
    def ok(self) -> bool:
        """No damage (notes may remain)."""
        return not self.damage

    @property
    def damage(self) -> tuple[VerifyProblem, ...]:
        """The problems that need a look."""
        return tuple(problem for problem in self.problems if problem.damage)

    @property
    def notes(self) -> tuple[VerifyProblem, ...]:
        """What a writer sets aside by itself."""
        return tuple(problem for problem in self.problems if not problem.damage)


class VerifyProgress(Protocol):
    """Told the bytes of branch files to read, then each line's bytes as read."""

    total: int

    def advance(self, count: int) -> None: ...


@dataclass
class _Found:
    """The report as it is built."""

    progress: VerifyProgress | None
    sessions: int = 0
    branches: int = 0
    records: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)

    def damage(self, path: Path, line: int, reason: str) -> None:
        self.problems.append(VerifyProblem(str(path), line, reason))

    def note(self, path: Path, reason: str) -> None:
        self.problems.append(VerifyProblem(str(path), 0, reason, damage=False))


@dataclass
class _Branch:
    """What one branch file holds, as far as the manifest checks need."""

    first: int = 0
    last: int = 0
    count: int = 0
    #: How many of its records each source branch's merge brought in.
    merged: Counter[str] = field(default_factory=Counter)


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as stream:
        yield from enumerate(stream, start=1)


def _torn(detail: str) -> str:
    return f"torn last line ({detail}); {_MOVED_ASIDE}"


def _check_log(path: Path, session_id: str, branch_id: str, found: _Found) -> _Branch:
    """Parse every line; check ids and that sequences step by one."""
    branch = _Branch()
    expected: int | None = None
    ids: dict[str, int] = {}
    pending: tuple[int, str] | None = None
    tail: tuple[int, bytes, int] | None = None
    for number, line in _numbered_lines(path):
        if found.progress is not None:
            found.progress.advance(len(line))
        if pending is not None:
            found.damage(path, *pending)
            pending = None
        if not line.endswith(b"\n"):
            found.damage(path, number, _torn(f"{len(line)} bytes, no newline"))
            break
        try:
            record = decode_record(line)
        except msgspec.DecodeError as exc:
            # Unparseable in the middle is corruption; as the last line it is a tear.
            pending = (number, f"unparseable record: {exc}")
            expected = None
            continue
        if record.session_id != session_id or record.branch_id != branch_id:
            found.damage(
                path,
                number,
                f"record of {record.session_id}/{record.branch_id} in the file of "
                f"{session_id}/{branch_id}",
            )
        if expected is not None and record.sequence != expected:
            found.damage(path, number, f"sequence {record.sequence}, expected {expected}")
        if record.event_id in ids:
            found.damage(
                path, number, f"event_id {record.event_id} repeats line {ids[record.event_id]}"
            )
        ids[record.event_id] = number
        origin = record.metadata.get("merged_from")
        if isinstance(origin, dict) and isinstance(origin.get("branch_id"), str):
            branch.merged[origin["branch_id"]] += 1
        if not branch.count:
            branch.first = record.sequence
        branch.last = record.sequence
        branch.count += 1
        expected = record.sequence + 1
        tail = (number, line, record.sequence)
    if pending is None and tail is not None:
        number, line, sequence = tail
        end = batch_end(line)
        if end > sequence:
            found.damage(
                path,
                number,
                f"batch cut short (it ends at sequence {end}); a writer opening the store "
                "moves its lines aside to a .torn file",
            )
    if pending is not None:
        number, reason = pending
        found.damage(path, number, _torn(reason))
    found.records += branch.count
    return branch


def _load_manifest(path: Path, found: _Found) -> dict[str, BranchMeta] | None:
    """The manifest's branches, read and checked by the store's own rules."""
    if path.is_symlink():
        found.damage(path, 0, LINK_REFUSED)
        return None
    if not path.exists():
        log = path.parent / BRANCH_LOG
        if log.is_file() and not log.is_symlink() and log.stat().st_size:
            found.damage(log, 1, f"a branch log but no {MANIFEST}: the manifest was lost")
        return None
    try:
        manifest = decode_manifest(path.read_bytes(), str(path))
        _apply_branch_log(path.parent, manifest, found)
    except CorruptLog as exc:
        found.damage(Path(exc.path), exc.line_number, exc.reason)
        return None
    if manifest.session_id != path.parent.name:
        found.damage(path, 1, f"manifest of session {manifest.session_id!r}")
    if manifest.pending_merge is not None:
        merge = manifest.pending_merge
        found.damage(
            path,
            1,
            f"interrupted merge of {merge.source!r} into {merge.target!r}; "
            "a writer opening the store finishes or undoes it",
        )
    for problem in manifest_problems(manifest):
        found.damage(path, 1, problem)
    # Only valid ids: the others name no file the store would open.
    return {
        branch.branch_id: branch
        for branch in manifest.branches
        if is_valid_identifier(branch.branch_id)
    }


def _apply_branch_log(folder: Path, manifest: Manifest, found: _Found) -> None:
    """Apply the session's branch log to its manifest (a torn last line is reported).

    :raises CorruptLog: for a damaged log, as the store would.
    """
    path = folder / BRANCH_LOG
    ops = FileOps()
    dir_fd = ops.open(str(folder), os.O_RDONLY | DIRECTORY | NOFOLLOW)
    try:
        log = read_log(ops, dir_fd, str(path))
    finally:
        ops.close(dir_fd)
    if log is None:
        return
    if log.torn:
        found.damage(
            path,
            len(log.entries) + 1,
            "torn last line of the branch log (never acknowledged); a writer cuts it "
            "when it next loads the session",
        )
    apply_log(manifest, log, str(path))


def _check_lineage(
    folder: Path, manifest: dict[str, BranchMeta], logs: dict[str, _Branch], found: _Found
) -> None:
    """Fork points against the parents' heads, merges against their targets."""
    where = folder / MANIFEST
    empty = _Branch()
    for branch_id, info in sorted(manifest.items()):
        log = logs.get(branch_id, empty)
        lost = lost_events(_head(info, log), info.known_head)
        if lost is not None:
            found.damage(folder / f"{branch_id}{BRANCH_SUFFIX}", 0, lost)
        if log.count and log.first != info.fork_sequence + 1:
            found.damage(
                folder / f"{branch_id}{BRANCH_SUFFIX}",
                1,
                f"first sequence {log.first}, expected {info.fork_sequence + 1} "
                f"(fork point {info.fork_sequence} in {MANIFEST})",
            )
        parent = info.parent_branch
        # An unknown parent or target is one of the manifest's own problems, reported already.
        if parent is not None and parent in manifest:
            head = _head(manifest[parent], logs.get(parent, empty))
            if info.fork_sequence > head:
                found.damage(
                    where,
                    1,
                    f"{branch_id!r} forks {parent!r} at {info.fork_sequence}, "
                    f"beyond its head {head}",
                )
        target = info.merged_into
        if target is None or target not in manifest:
            continue
        brought = logs.get(target, empty).merged[branch_id]
        if brought != log.count:
            found.damage(
                where,
                1,
                f"{branch_id!r} is marked merged into {target!r}, which holds {brought} "
                f"of its {log.count} events",
            )


def _head(info: BranchMeta, log: _Branch) -> int:
    return log.last if log.count else info.fork_sequence


def _check_session(folder: Path, found: _Found) -> None:
    session_id = folder.name
    found.sessions += 1
    manifest = _load_manifest(folder / MANIFEST, found)
    logs: dict[str, _Branch] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == TORN_SUFFIX:
            found.note(path, "a torn tail kept aside by an earlier repair")
        if path.suffix == BRANCH_SUFFIX and path.is_symlink():
            found.damage(path, 0, LINK_REFUSED)
            continue
        if path.suffix != BRANCH_SUFFIX or not path.is_file():
            continue
        branch_id = path.stem
        if not is_valid_identifier(branch_id):
            found.damage(path, 0, f"{branch_id!r} is not a valid branch id")
            continue
        # The store knows a session's branches from its manifest alone.
        if manifest is None or branch_id not in manifest:
            unnamed = (
                f"no {MANIFEST} in {folder}" if manifest is None else f"not listed in {MANIFEST}"
            )
            lost = _lost_history(path, session_id, branch_id)
            if lost is None:
                # Never acknowledged, never shown: nothing to repair by hand.
                if path.stat().st_size:
                    found.note(path, f"{unnamed}: {LEFTOVER}")
                continue
            # More than a crash's leftover: the store refuses it (CorruptLog).
            line, reason = lost
            found.damage(path, line, f"{unnamed}, and not a crash's leftover: {reason}")
        logs[branch_id] = _check_log(path, session_id, branch_id, found)
    found.branches += len(set(logs) | set(manifest or ()))
    if manifest is not None:
        _check_lineage(folder, manifest, logs, found)


def _lost_history(path: Path, session_id: str, branch_id: str) -> tuple[int, str] | None:
    """Why an unnamed branch file proves a manifest once named it (the store's rule)."""
    ops = FileOps()
    fd = ops.open(str(path), os.O_RDONLY)
    try:
        return leftover_problem(ops, fd, session_id, branch_id, ops.fstat(fd).st_size)
    finally:
        ops.close(fd)


def _is_link(folder: Path, found: _Found) -> bool:
    if not folder.is_symlink():
        return False
    found.damage(folder, 0, f"the session directory is {LINK_REFUSED}")
    return True


def _sessions(root: Path, session_id: str | None, found: _Found) -> list[Path]:
    """The session directories to check; links among them are reported, not followed."""
    if session_id is not None:
        folder = root / check_identifier(session_id, "session_id")
        if _is_link(folder, found):
            return []
        if not folder.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(folder))
        return [folder]
    return [
        folder
        for folder in sorted(root.iterdir())
        if is_valid_identifier(folder.name) and not _is_link(folder, found) and folder.is_dir()
    ]


def _branch_bytes(folders: list[Path]) -> int:
    """The size of the branch files :func:`verify` will read: the progress total."""
    total = 0
    # A file gone meanwhile leaves the total short; verify reports the file.
    with contextlib.suppress(OSError):
        for folder in folders:
            for path in folder.glob(f"*{BRANCH_SUFFIX}"):
                if not path.is_symlink():
                    total += path.stat().st_size
    return total


def verify(
    root: str | os.PathLike[str],
    session_id: str | None = None,
    *,
    progress: VerifyProgress | None = None,
) -> VerifyReport:
    """Check every session of the file store at ``root`` (or one); reads files, writes nothing.

    Safe beside a writer in another process, and on a store a writer would
    refuse: every problem is reported, none raised, and nothing is repaired.

    :param progress: given the bytes of branch files to read as ``total``, then
        told of each line read.
    :raises InvalidIdentifier: if ``session_id`` is not a valid identifier.
    :raises FileNotFoundError: if ``root``, or the directory of ``session_id``,
        does not exist.
    :raises OSError: if a file cannot be read.
    """
    found = _Found(progress)
    folders = _sessions(Path(root), session_id, found)
    if progress is not None:
        progress.total = _branch_bytes(folders)
    for folder in folders:
        _check_session(folder, found)
    return VerifyReport(found.sessions, found.branches, found.records, tuple(found.problems))
