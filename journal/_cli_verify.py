"""``eventstore verify``: check a file store's files, changing nothing.

A writer store repairs a torn tail when it opens a branch, so ``verify`` opens
no store at all: it reads ``<root>/<session>/<branch>.jsonl`` and
``branches.json`` itself, read-only, and reports each problem as ``path:line``.
It can run while a writer appends (a record being written at that moment may
show up as a torn tail; run it again).

The rules are the store's own: ``branches.json`` is checked by
:func:`eventstore.file._manifest.manifest_problems`, a branch file no manifest
names by :func:`eventstore.file._leftover.leftover_problem` (a crash's leftover,
or proof the manifest was lost), and a symbolic link is reported, never followed.

A problem (exit 1) needs a look. A note does not: ``.torn`` files a repair
kept, and the leftover of a new branch's first write that a crash or a full
disk interrupted before the manifest named it (never acknowledged, never shown,
moved aside by the writer that next loads the session).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from eventstore import CorruptLog, EventRecord, is_valid_identifier
from eventstore.file import FileOps
from eventstore.file._leftover import LINK_REFUSED, leftover_problem
from eventstore.file._manifest import BranchMeta, decode_manifest, manifest_problems

from ._cli import EXIT_FAILED, EXIT_OK, CliError, Context
from ._cli_progress import Progress
from ._cli_render import plural

__all__ = ("Problem", "Report", "verify", "verify_root")

MANIFEST = "branches.json"

#: A branch file no manifest names that holds one first write, cut short or
#: whole: a kill or a full disk struck before the manifest named it.
LEFTOVER = (
    "the leftover of a first write that a crash or a full disk interrupted; it was "
    "never acknowledged, the store does not show it, and a writer moves it to a .torn "
    "file when it next loads the session"
)

_decode_record = msgspec.json.Decoder(EventRecord).decode


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong, where it is (``line`` 0: the file as a whole)."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass
class Report:
    """What ``verify`` looked at and what it found."""

    sessions: int = 0
    branches: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)

    def problem(self, path: Path, line: int, message: str) -> None:
        self.problems.append(Problem(str(path), line, message))


@dataclass
class _Branch:
    """What one branch file holds, as far as the manifest checks need."""

    first: int = 0
    last: int = 0
    count: int = 0
    #: How many of its records each source branch's merge brought in.
    merged: Counter[str] = field(default_factory=Counter)


class _BatchMark(msgspec.Struct):
    # Lines of a multi-record batch, all but its last, carry the batch's last sequence.
    batch_end: int = 0


_decode_mark = msgspec.json.Decoder(_BatchMark).decode


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as stream:
        yield from enumerate(stream, start=1)


def _check_log(
    path: Path, session_id: str, branch_id: str, report: Report, progress: Progress | None
) -> _Branch:
    """Parse every line; check ids and that sequences step by one."""
    found = _Branch()
    expected: int | None = None
    ids: dict[str, int] = {}
    pending: tuple[int, str] | None = None
    tail: tuple[int, bytes, int] | None = None
    for number, line in _numbered_lines(path):
        if progress is not None:
            progress.advance(len(line))
        if pending is not None:
            report.problem(path, *pending)
            pending = None
        if not line.endswith(b"\n"):
            report.problem(
                path,
                number,
                f"torn last line ({len(line)} bytes, no newline); a writer opening the "
                "store moves it aside to a .torn file",
            )
            break
        try:
            record = _decode_record(line)
        except msgspec.DecodeError as exc:
            # Unparseable in the middle is corruption; as the last line it is a tear.
            pending = (number, f"unparseable record: {exc}")
            expected = None
            continue
        if record.session_id != session_id or record.branch_id != branch_id:
            report.problem(
                path,
                number,
                f"record of {record.session_id}/{record.branch_id} in the file of "
                f"{session_id}/{branch_id}",
            )
        if expected is not None and record.sequence != expected:
            report.problem(path, number, f"sequence {record.sequence}, expected {expected}")
        if record.event_id in ids:
            report.problem(
                path, number, f"event_id {record.event_id} repeats line {ids[record.event_id]}"
            )
        ids[record.event_id] = number
        origin = record.metadata.get("merged_from")
        if isinstance(origin, dict) and isinstance(origin.get("branch_id"), str):
            found.merged[origin["branch_id"]] += 1
        if not found.count:
            found.first = record.sequence
        found.last = record.sequence
        found.count += 1
        expected = record.sequence + 1
        tail = (number, line, record.sequence)
    if pending is None and tail is not None and b'"batch_end":' in tail[1]:
        number, line, sequence = tail
        end = _decode_mark(line).batch_end
        if end > sequence:
            report.problem(
                path,
                number,
                f"batch cut short (it ends at sequence {end}); a writer opening the store "
                "moves its lines aside to a .torn file",
            )
    if pending is not None:
        number, reason = pending
        report.problem(
            path,
            number,
            f"torn last line ({reason}); a writer opening the store moves it aside to a .torn file",
        )
    report.events += found.count
    return found


def _load_manifest(path: Path, report: Report) -> dict[str, BranchMeta] | None:
    """The manifest's branches, read and checked by the store's own rules."""
    if path.is_symlink():
        report.problem(path, 0, LINK_REFUSED)
        return None
    if not path.exists():
        return None
    try:
        manifest = decode_manifest(path.read_bytes(), str(path))
    except CorruptLog as exc:
        report.problem(path, exc.line_number, exc.reason)
        return None
    if manifest.session_id != path.parent.name:
        report.problem(path, 1, f"manifest of session {manifest.session_id!r}")
    if manifest.pending_merge is not None:
        merge = manifest.pending_merge
        report.problem(
            path,
            1,
            f"interrupted merge of {merge.source!r} into {merge.target!r}; "
            "a writer opening the store finishes or undoes it",
        )
    for problem in manifest_problems(manifest):
        report.problem(path, 1, problem)
    # Only valid ids: the others name no file the store would open.
    return {
        branch.branch_id: branch
        for branch in manifest.branches
        if is_valid_identifier(branch.branch_id)
    }


def _check_lineage(
    folder: Path, manifest: dict[str, BranchMeta], logs: dict[str, _Branch], report: Report
) -> None:
    """Fork points against the parents' heads, merges against their targets."""
    where = folder / MANIFEST
    empty = _Branch()
    for branch_id, info in sorted(manifest.items()):
        log = logs.get(branch_id, empty)
        if _head(info, log) < info.known_head:
            report.problem(
                folder / f"{branch_id}.jsonl",
                0,
                f"holds sequences up to {_head(info, log)}, but {MANIFEST} records that the "
                f"branch reached {info.known_head}: acknowledged events are missing",
            )
        if log.count and log.first != info.fork_sequence + 1:
            report.problem(
                folder / f"{branch_id}.jsonl",
                1,
                f"first sequence {log.first}, expected {info.fork_sequence + 1} "
                f"(fork point {info.fork_sequence} in {MANIFEST})",
            )
        parent = info.parent_branch
        # An unknown parent or target is one of the manifest's own problems, reported already.
        if parent is not None and parent in manifest:
            head = _head(manifest[parent], logs.get(parent, empty))
            if info.fork_sequence > head:
                report.problem(
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
            report.problem(
                where,
                1,
                f"{branch_id!r} is marked merged into {target!r}, which holds {brought} "
                f"of its {log.count} events",
            )


def _head(info: BranchMeta, log: _Branch) -> int:
    return log.last if log.count else info.fork_sequence


def _check_session(folder: Path, report: Report, progress: Progress | None = None) -> None:
    session_id = folder.name
    report.sessions += 1
    manifest = _load_manifest(folder / MANIFEST, report)
    logs: dict[str, _Branch] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".torn":
            report.notes.append(
                Problem(str(path), 0, "a torn tail kept aside by an earlier repair")
            )
        if path.suffix == ".jsonl" and path.is_symlink():
            report.problem(path, 0, LINK_REFUSED)
            continue
        if path.suffix != ".jsonl" or not path.is_file():
            continue
        branch_id = path.stem
        if not is_valid_identifier(branch_id):
            report.problem(path, 0, f"{branch_id!r} is not a valid branch id")
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
                    report.notes.append(Problem(str(path), 0, f"{unnamed}: {LEFTOVER}"))
                continue
            # More than a crash's leftover: the store refuses it (CorruptLog).
            line, reason = lost
            report.problem(path, line, f"{unnamed}, and not a crash's leftover: {reason}")
        logs[branch_id] = _check_log(path, session_id, branch_id, report, progress)
    report.branches += len(set(logs) | set(manifest or ()))
    if manifest is not None:
        _check_lineage(folder, manifest, logs, report)


def _lost_history(path: Path, session_id: str, branch_id: str) -> tuple[int, str] | None:
    """Why an unnamed branch file proves a manifest once named it (the store's rule)."""
    ops = FileOps()
    fd = ops.open(str(path), os.O_RDONLY)
    try:
        return leftover_problem(ops, fd, session_id, branch_id, ops.fstat(fd).st_size)
    finally:
        ops.close(fd)


def _is_link(folder: Path, report: Report) -> bool:
    if not folder.is_symlink():
        return False
    report.problem(folder, 0, f"the session directory is {LINK_REFUSED}")
    return True


def verify_root(
    root: Path, session_id: str | None = None, progress: Progress | None = None
) -> Report:
    """Check every session under ``root`` (or one); reads files, writes nothing.

    :param progress: counts the bytes of every branch file read.
    :raises CliError: if ``session_id`` names no session directory.
    """
    report = Report()
    if session_id is not None:
        folder = root / session_id
        if _is_link(folder, report):
            return report
        if not folder.is_dir():
            raise CliError(f"unknown session {session_id!r} (see `eventstore sessions`)")
        _check_session(folder, report, progress)
        return report
    for folder in sorted(root.iterdir()):
        if not is_valid_identifier(folder.name) or _is_link(folder, report):
            continue
        if folder.is_dir():
            _check_session(folder, report, progress)
    return report


def _log_bytes(root: Path, session_id: str | None) -> int:
    """The size of the branch files ``verify_root`` will read: the progress total."""
    folders = [root / session_id] if session_id is not None else list(root.iterdir())
    total = 0
    for folder in folders:
        if folder.is_dir() and not folder.is_symlink():
            total += sum(p.stat().st_size for p in folder.glob("*.jsonl") if not p.is_symlink())
    return total


async def verify(ctx: Context) -> int:
    """``eventstore verify [SESSION]``: exit 1 if anything is wrong."""
    root = ctx.root()
    with Progress("verify", unit="bytes") as progress:
        # A file gone meanwhile leaves the line without a total; verify reports the file.
        with contextlib.suppress(OSError):
            if progress.enabled:
                progress.total = _log_bytes(root, ctx.args.session)
        report = verify_root(root, ctx.args.session, progress)
    ok = not report.problems
    if ctx.json:
        ctx.out.json(
            {
                "ok": ok,
                "sessions": report.sessions,
                "branches": report.branches,
                "events": report.events,
                "problems": report.problems,
                "notes": report.notes,
            }
        )
    else:
        for problem in report.problems:
            ctx.out.line(str(problem))
        for note in report.notes:
            ctx.out.line(f"note: {note}")
        counts = (
            f"{plural(report.sessions, 'session')}, "
            f"{plural(report.branches, 'branch', 'branches')}, {plural(report.events, 'event')}"
        )
        if ok:
            ctx.out.line(f"OK: {counts} checked")
        else:
            ctx.out.line(f"FAILED: {plural(len(report.problems), 'problem')} in {counts}")
    return EXIT_OK if ok else EXIT_FAILED
