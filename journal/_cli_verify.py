"""``eventstore verify``: check a file store's files, changing nothing.

A writer store repairs a torn tail when it opens a branch, so ``verify`` opens
no store at all: it reads ``<root>/<session>/<branch>.jsonl`` and
``branches.json`` itself, read-only, and reports each problem as ``path:line``.
It can run while a writer appends (a record being written at that moment may
show up as a torn tail; run it again).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from eventstore import EventRecord, is_valid_identifier

from ._cli import EXIT_FAILED, EXIT_OK, CliError, Context
from ._cli_render import plural

__all__ = ("Problem", "Report", "verify", "verify_root")

MANIFEST = "branches.json"

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


def _check_log(path: Path, session_id: str, branch_id: str, report: Report) -> _Branch:
    """Parse every line; check ids and that sequences step by one."""
    found = _Branch()
    expected: int | None = None
    ids: dict[str, int] = {}
    pending: tuple[int, str] | None = None
    tail: tuple[int, bytes, int] | None = None
    for number, line in _numbered_lines(path):
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


class _ManifestBranch(msgspec.Struct):
    branch_id: str
    parent_branch: str | None = None
    fork_sequence: int = 0
    merged_into: str | None = None


class _Manifest(msgspec.Struct):
    # The file store's ``branches.json``; unknown fields are ignored, as it does.
    session_id: str
    branches: list[_ManifestBranch] = msgspec.field(default_factory=list)
    pending_merge: dict[str, Any] | None = None


_decode_manifest = msgspec.json.Decoder(_Manifest).decode


def _load_manifest(path: Path, report: Report) -> dict[str, _ManifestBranch] | None:
    if not path.exists():
        return None
    try:
        manifest = _decode_manifest(path.read_bytes())
    except msgspec.DecodeError as exc:
        report.problem(path, 1, f"unreadable branch manifest: {exc}")
        return None
    if manifest.session_id != path.parent.name:
        report.problem(path, 1, f"manifest of session {manifest.session_id!r}")
    if manifest.pending_merge is not None:
        merge = manifest.pending_merge
        report.problem(
            path,
            1,
            f"interrupted merge of {merge.get('source')!r} into {merge.get('target')!r}; "
            "a writer opening the store finishes or undoes it",
        )
    found: dict[str, _ManifestBranch] = {}
    for branch in manifest.branches:
        if branch.branch_id in found:
            report.problem(path, 1, f"branch {branch.branch_id!r} is listed twice")
        found[branch.branch_id] = branch
    return found


def _check_lineage(
    folder: Path, manifest: dict[str, _ManifestBranch], logs: dict[str, _Branch], report: Report
) -> None:
    """Fork points against the parents' heads, merges against their targets."""
    where = folder / MANIFEST
    empty = _Branch()
    for branch_id, info in sorted(manifest.items()):
        log = logs.get(branch_id, empty)
        if log.count and log.first != info.fork_sequence + 1:
            report.problem(
                folder / f"{branch_id}.jsonl",
                1,
                f"first sequence {log.first}, expected {info.fork_sequence + 1} "
                f"(fork point {info.fork_sequence} in {MANIFEST})",
            )
        parent = info.parent_branch
        if parent is not None:
            if parent not in manifest:
                report.problem(where, 1, f"{branch_id!r} forks from unknown branch {parent!r}")
            else:
                head = _head(manifest[parent], logs.get(parent, empty))
                if info.fork_sequence > head:
                    report.problem(
                        where,
                        1,
                        f"{branch_id!r} forks {parent!r} at {info.fork_sequence}, "
                        f"beyond its head {head}",
                    )
        target = info.merged_into
        if target is None:
            continue
        if target not in manifest:
            report.problem(where, 1, f"{branch_id!r} was merged into unknown branch {target!r}")
            continue
        brought = logs.get(target, empty).merged[branch_id]
        if brought != log.count:
            report.problem(
                where,
                1,
                f"{branch_id!r} is marked merged into {target!r}, which holds {brought} "
                f"of its {log.count} events",
            )


def _head(info: _ManifestBranch, log: _Branch) -> int:
    return log.last if log.count else info.fork_sequence


def _check_session(folder: Path, report: Report) -> None:
    session_id = folder.name
    report.sessions += 1
    manifest = _load_manifest(folder / MANIFEST, report)
    logs: dict[str, _Branch] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".torn":
            report.notes.append(
                Problem(str(path), 0, "a torn tail kept aside by an earlier repair")
            )
        if path.suffix != ".jsonl" or not path.is_file():
            continue
        branch_id = path.stem
        if not is_valid_identifier(branch_id):
            report.problem(path, 0, f"{branch_id!r} is not a valid branch id")
            continue
        logs[branch_id] = _check_log(path, session_id, branch_id, report)
        # The store knows a session's branches from its manifest alone.
        if manifest is None:
            report.problem(path, 0, f"no {MANIFEST} in {folder}: the store cannot see it")
        elif branch_id not in manifest:
            report.problem(path, 0, f"not listed in {MANIFEST}: the store cannot see it")
    report.branches += len(set(logs) | set(manifest or ()))
    if manifest is not None:
        _check_lineage(folder, manifest, logs, report)


def verify_root(root: Path, session_id: str | None = None) -> Report:
    """Check every session under ``root`` (or one); reads files, writes nothing.

    :raises CliError: if ``session_id`` names no session directory.
    """
    report = Report()
    if session_id is not None:
        folder = root / session_id
        if not folder.is_dir():
            raise CliError(f"unknown session {session_id!r} (see `eventstore sessions`)")
        _check_session(folder, report)
        return report
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and is_valid_identifier(folder.name):
            _check_session(folder, report)
    return report


async def verify(ctx: Context) -> int:
    """``eventstore verify [SESSION]``: exit 1 if anything is wrong."""
    report = verify_root(ctx.root(), ctx.args.session)
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
