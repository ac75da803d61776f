"""``eventstore export`` and ``eventstore import``: JSONL records in, the same records out.

An export is a branch's logical history, exactly as ``read`` returns it: the
inherited records keep the branch id of the ancestor that wrote them. That is
enough to rebuild the lineage on import, without any header line: a run of
records of branch ``X`` starting at sequence ``n`` right after sequence ``n - 1``
of branch ``P`` means ``X`` was forked from ``P`` at ``n - 1``. Records already
stored with the same event id are skipped, so ``export --all`` (every branch's
history, parents first) imports too, and importing twice changes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

import msgspec

from eventstore import BranchInfo, EventRecord, EventStore, InvalidIdentifier, check_identifier

from ._cli import EXIT_OK, CliError, Context
from ._cli_commands import require_branch, require_session
from ._cli_render import plural

__all__ = ("export", "import_", "parents_first")

#: Records per ``append_batch`` on import.
BATCH = 1000

_decode_record = msgspec.json.Decoder(EventRecord).decode


def parents_first(infos: Sequence[BranchInfo]) -> list[str]:
    """Branch ids ordered so each comes after its parent (``main`` first)."""
    known = {info.branch_id for info in infos}
    children: dict[str | None, list[BranchInfo]] = {}
    for info in infos:
        parent = info.parent_branch if info.parent_branch in known else None
        children.setdefault(parent, []).append(info)
    order: list[str] = []
    pending: list[str | None] = [None]
    while pending:
        parent = pending.pop(0)
        group = sorted(children.get(parent, []), key=lambda b: (b.branch_id != "main", b.branch_id))
        for info in group:
            if info.branch_id not in order:
                order.append(info.branch_id)
                pending.append(info.branch_id)
    return order


async def export(ctx: Context) -> int:
    """``eventstore export SESSION [--branch B | --all]``: records to stdout."""
    args = ctx.args
    async with ctx.reader() as store:
        infos = await require_session(store, args.session)
        if args.all:
            chosen = parents_first(infos)
        else:
            chosen = [require_branch(infos, args.branch).branch_id]
        for branch_id in chosen:
            async for record in store.iter_events(args.session, branch_id):
                ctx.out.json(record)
    return EXIT_OK


def _check(record: EventRecord) -> None:
    check_identifier(record.session_id, "session_id")
    check_identifier(record.branch_id, "branch_id")
    if record.sequence < 1:
        raise ValueError(f"sequence must be >= 1, got {record.sequence}")
    if not record.kind:
        raise ValueError("kind must not be empty")
    if not record.event_id or len(record.event_id) > 128:
        raise ValueError("event_id must have 1-128 characters")
    if not isinstance(record.recorded_at, datetime) or record.recorded_at.tzinfo is None:
        raise ValueError("recorded_at must carry a timezone")


def _lines(name: str) -> Iterator[bytes]:
    if name == "-":
        yield from sys.stdin.buffer
        return
    stream: BinaryIO
    with open(name, "rb") as stream:
        yield from stream


def _load(name: str, session: str | None) -> list[tuple[int, EventRecord]]:
    """Every record of the file with its line number, checked before anything is written."""
    label = "<stdin>" if name == "-" else name
    records: list[tuple[int, EventRecord]] = []
    for number, line in enumerate(_lines(name), start=1):
        if not line.strip():
            continue
        try:
            record = _decode_record(line)
            _check(record)
        except (msgspec.DecodeError, InvalidIdentifier, ValueError) as exc:
            raise CliError(f"{label}:{number}: not an event record: {exc}") from None
        records.append((number, record))
    if not records:
        raise CliError(f"{label}: no records to import")
    if session is not None:
        found = {record.session_id for _, record in records}
        if len(found) > 1:
            raise CliError(f"{label} holds {len(found)} sessions; --session can rename only one")
        records = [(n, msgspec.structs.replace(r, session_id=session)) for n, r in records]
    return records


@dataclass
class _Run:
    """Consecutive records of one branch with contiguous sequences."""

    line: int
    records: list[EventRecord] = field(default_factory=list)

    @property
    def first(self) -> EventRecord:
        return self.records[0]


def _runs(records: Sequence[tuple[int, EventRecord]]) -> list[_Run]:
    runs: list[_Run] = []
    for number, record in records:
        last = runs[-1].records[-1] if runs else None
        if (
            last is None
            or last.session_id != record.session_id
            or last.branch_id != record.branch_id
            or last.sequence + 1 != record.sequence
        ):
            runs.append(_Run(number))
        runs[-1].records.append(record)
    return runs


@dataclass
class _Importer:
    store: EventStore
    label: str
    heads: dict[tuple[str, str], int] = field(default_factory=dict)
    loaded: set[str] = field(default_factory=set)
    imported: int = 0
    present: int = 0
    created: int = 0

    async def head(self, session_id: str, branch_id: str) -> int | None:
        if session_id not in self.loaded:
            self.loaded.add(session_id)
            for info in await self.store.list_branches(session_id):
                self.heads[session_id, info.branch_id] = info.head
        return self.heads.get((session_id, branch_id))

    async def skip_present(self, run: _Run, head: int) -> list[EventRecord]:
        """Check the records already stored are the same events; return the rest."""
        first = run.first
        stored = await self.store.read(
            first.session_id, first.branch_id, first.sequence, to_sequence=head
        )
        for offset, (ours, theirs) in enumerate(zip(run.records, stored, strict=False)):
            if ours.event_id != theirs.event_id:
                raise CliError(
                    f"{self.label}:{run.line + offset}: {ours.session_id}/{ours.branch_id}"
                    f"#{ours.sequence} is already stored as another event "
                    f"({theirs.event_id}, not {ours.event_id})"
                )
        self.present += len(stored)
        return run.records[len(stored) :]

    async def apply(self, run: _Run, previous: _Run | None) -> None:
        first = run.first
        key = (first.session_id, first.branch_id)
        head = await self.head(*key)
        rest = run.records if head is None else await self.skip_present(run, head)
        if not rest:
            return
        start = rest[0].sequence
        line = run.line + len(run.records) - len(rest)
        if head is None and start > 1:
            parent = previous.records[-1] if previous is not None else None
            if (
                parent is None
                or parent.session_id != first.session_id
                or (parent.sequence != start - 1)
            ):
                raise CliError(
                    f"{self.label}:{line}: cannot tell where {first.session_id}/"
                    f"{first.branch_id} was forked from: its first record has sequence "
                    f"{start}, and the record before it is not sequence {start - 1}"
                )
            await self.store.create_branch(
                first.session_id,
                first.branch_id,
                from_branch=parent.branch_id,
                fork_sequence=start - 1,
            )
            self.created += 1
        elif head is not None and start != head + 1:
            raise CliError(
                f"{self.label}:{line}: {first.session_id}/{first.branch_id} ends at "
                f"sequence {head}; this record has sequence {start}"
            )
        elif head is None:
            self.created += 1
        for index in range(0, len(rest), BATCH):
            await self.store.append_batch(rest[index : index + BATCH])
        self.imported += len(rest)
        self.heads[key] = rest[-1].sequence


async def import_(ctx: Context) -> int:
    """``eventstore import FILE [--session NEW]``: the inverse of ``export``."""
    args = ctx.args
    label = "<stdin>" if args.file == "-" else args.file
    records = _load(args.file, args.session)
    runs = _runs(records)
    async with ctx.writer(create=True) as store:
        importer = _Importer(store, label)
        previous: _Run | None = None
        for run in runs:
            await importer.apply(run, previous)
            previous = run
    sessions = sorted({record.session_id for _, record in records})
    summary = {
        "sessions": sessions,
        "imported": importer.imported,
        "already_present": importer.present,
        "branches_created": importer.created,
    }
    if ctx.json:
        ctx.out.json(summary)
    else:
        ctx.out.line(
            f"imported {importer.imported} events into {', '.join(sessions)} "
            f"({importer.present} already present, "
            f"{plural(importer.created, 'branch', 'branches')} created)"
        )
    return EXIT_OK
