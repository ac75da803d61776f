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


Key = tuple[str, str]


@dataclass
class _Importer:
    """Applies runs in order; with ``write=False`` it only checks they would apply.

    Import runs it twice under the writer lock, checking first, so a file that
    contradicts the store is refused before anything is written.
    """

    store: EventStore
    label: str
    write: bool
    #: Heads in the store before the import, and the branches already merged.
    stored: dict[Key, int] = field(default_factory=dict)
    closed: dict[Key, str] = field(default_factory=dict)
    loaded: set[str] = field(default_factory=set)
    #: Heads as the import goes, and the event ids it adds.
    heads: dict[Key, int] = field(default_factory=dict)
    added: dict[Key, dict[int, str]] = field(default_factory=dict)
    imported: int = 0
    present: int = 0
    created: int = 0

    async def head(self, key: Key) -> int | None:
        if key[0] not in self.loaded:
            self.loaded.add(key[0])
            for info in await self.store.list_branches(key[0]):
                self.stored[key[0], info.branch_id] = info.head
                self.heads[key[0], info.branch_id] = info.head
                if info.merged_into is not None:
                    self.closed[key[0], info.branch_id] = info.merged_into
        return self.heads.get(key)

    def _conflict(self, line: int, ours: EventRecord, theirs: str) -> CliError:
        return CliError(
            f"{self.label}:{line}: {ours.session_id}/{ours.branch_id}#{ours.sequence} "
            f"is already stored as another event ({theirs}, not {ours.event_id})"
        )

    async def skip_present(self, run: _Run, key: Key, head: int) -> list[EventRecord]:
        """Check the records already there are the same events; return the rest."""
        present = [record for record in run.records if record.sequence <= head]
        in_store = [record for record in present if record.sequence <= self.stored.get(key, 0)]
        if in_store:
            stored = await self.store.read(
                *key, in_store[0].sequence, to_sequence=in_store[-1].sequence
            )
            for offset, (ours, theirs) in enumerate(zip(in_store, stored, strict=True)):
                if ours.event_id != theirs.event_id:
                    raise self._conflict(run.line + offset, ours, theirs.event_id)
        added = self.added.get(key, {})
        for offset, ours in enumerate(present[len(in_store) :], start=len(in_store)):
            if added[ours.sequence] != ours.event_id:
                raise self._conflict(run.line + offset, ours, added[ours.sequence])
        self.present += len(present)
        return run.records[len(present) :]

    def _fork_parent(self, run: _Run, previous: _Run | None, line: int, start: int) -> str:
        first = run.first
        parent = previous.records[-1] if previous is not None else None
        if parent is None or parent.session_id != first.session_id or parent.sequence != start - 1:
            raise CliError(
                f"{self.label}:{line}: cannot tell where {first.session_id}/"
                f"{first.branch_id} was forked from: its first record has sequence "
                f"{start}, and the record before it is not sequence {start - 1}"
            )
        return parent.branch_id

    def _check_open(self, key: Key, line: int) -> None:
        if key in self.closed:
            raise CliError(
                f"{self.label}:{line}: {key[0]}/{key[1]} is closed "
                f"(merged into {self.closed[key]!r}); it takes no more events"
            )

    async def apply(self, run: _Run, previous: _Run | None) -> None:
        first = run.first
        key = (first.session_id, first.branch_id)
        head = await self.head(key)
        rest = run.records if head is None else await self.skip_present(run, key, head)
        if not rest:
            return
        start = rest[0].sequence
        line = run.line + len(run.records) - len(rest)
        self._check_open(key, line)
        if head is None:
            if start > 1:
                parent = self._fork_parent(run, previous, line, start)
                self._check_open((key[0], parent), line)
                if self.write:
                    await self.store.create_branch(
                        *key, from_branch=parent, fork_sequence=start - 1
                    )
            self.created += 1
        elif start != head + 1:
            raise CliError(
                f"{self.label}:{line}: {key[0]}/{key[1]} ends at sequence {head}; "
                f"this record has sequence {start}"
            )
        if self.write:
            for index in range(0, len(rest), BATCH):
                await self.store.append_batch(rest[index : index + BATCH])
        self.added.setdefault(key, {}).update((r.sequence, r.event_id) for r in rest)
        self.imported += len(rest)
        self.heads[key] = rest[-1].sequence


async def import_(ctx: Context) -> int:
    """``eventstore import FILE [--session NEW]``: the inverse of ``export``."""
    args = ctx.args
    label = "<stdin>" if args.file == "-" else args.file
    records = _load(args.file, args.session)
    runs = _runs(records)
    async with ctx.writer(create=True) as store:
        # Check everything first (nobody else can write: we hold the lock), then write.
        for write in (False, True):
            importer = _Importer(store, label, write)
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
