"""``eventstore export`` and ``eventstore import``: JSONL records in, the same records out.

An export is a branch's logical history, exactly as ``read`` returns it: the
inherited records keep the branch id of the ancestor that wrote them. That is
enough to rebuild the lineage on import, without any header line: a run of
records of branch ``X`` starting at sequence ``n`` right after sequence ``n - 1``
of branch ``P`` means ``X`` was forked from ``P`` at ``n - 1``. Records already
stored with the same event id are skipped, so ``export --all`` (every branch's
history, parents first) imports too, and importing twice changes nothing.

An import is all or nothing as far as the file goes: it is read once to check
every line (a record, storable, its event id at one place only), once under
the writer lock to check it against the store, and only then once to write.
Each read streams, so memory holds one batch and the event ids, not the file.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, BinaryIO

import msgspec

from eventstore import BranchInfo, EventRecord, EventStore, InvalidEvent
from eventstore._codec import decode_record
from eventstore._lineage import parents_first
from eventstore._validate import check_event
from eventstore.file._batch import encode_batch

from ._context import (
    EXIT_OK,
    SESSION,
    AddCommand,
    CliError,
    Context,
    add_branch,
    add_session,
    require_branch,
    require_session,
)
from ._progress import Progress
from ._render import plural

__all__ = ("add_export", "add_import", "export", "import_")


def add_export(command: AddCommand) -> None:
    """Register ``export``."""
    p = command("export", "Write a branch's history to stdout, one JSON record per line.", export)
    add_session(p)
    group = p.add_mutually_exclusive_group()
    add_branch(group)
    group.add_argument("--all", action="store_true", help="every branch, parents first")


def add_import(command: AddCommand) -> None:
    """Register ``import``."""
    p = command("import", "Load records written by export; creates the root if needed.", import_)
    p.add_argument("file", metavar="FILE", help="JSONL records, or - for stdin")
    p.add_argument("--session", type=SESSION, metavar="NEW", help="import under this id")


#: Records per ``append_batch`` on import.
BATCH = 1000


def portable(record: EventRecord) -> dict[str, Any]:
    """The record as an export carries it: without its feed position, which only
    means something in the store it came from (an import assigns new ones)."""
    fields = msgspec.structs.asdict(record)
    del fields["position"]
    return fields


async def export(ctx: Context) -> int:
    """``eventstore export SESSION [--branch B | --all]``: records to stdout."""
    args = ctx.args
    async with ctx.reader() as store:
        infos = await require_session(store, args.session)
        if args.all:
            chosen = parents_first(infos)
        else:
            chosen = [require_branch(infos, args.branch).branch_id]
        heads = {info.branch_id: info.head for info in infos}
        # Records written to the terminal itself show how far it got.
        with Progress(
            "export", sum(heads[b] for b in chosen), show=not sys.stdout.isatty()
        ) as progress:
            for branch_id in chosen:
                async for record in store.iter_events(args.session, branch_id):
                    ctx.out.json(portable(record))
                    progress.advance()
    return EXIT_OK


class _Input:
    """The import file, read once per pass; stdin is kept in a temporary file for that."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.label = "<stdin>" if name == "-" else name
        self._stream: BinaryIO | None = None
        self._stamp: tuple[int, int] | None = None
        #: Counts the bytes of every pass over the file.
        self.progress: Progress | None = None

    def __enter__(self) -> _Input:
        if self.name == "-":
            self._stream = self._spool(sys.stdin.buffer)
            return self
        stream = open(self.name, "rb")
        if stream.seekable():
            self._stream = stream
        else:  # a pipe given by name, as ``<(...)`` gives one
            with stream:
                self._stream = self._spool(stream)
        return self

    @staticmethod
    def _spool(stream: BinaryIO) -> BinaryIO:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
        try:
            shutil.copyfileobj(stream, spool)
            spool.flush()
        except BaseException:
            spool.close()
            raise
        return spool

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """Every non-blank line with its number, from the start of the file.

        :raises CliError: if the file changed since the first pass began.
        """
        stream = self._stream
        assert stream is not None
        found = os.fstat(stream.fileno())
        stamp = (found.st_size, found.st_mtime_ns)
        if self._stamp is None:
            self._stamp = stamp
        elif stamp != self._stamp:
            raise CliError(f"{self.label} changed during the import; nothing was written")
        stream.seek(0)
        progress = self.progress
        for number, line in enumerate(stream, start=1):
            if progress is not None:
                progress.advance(len(line))
            if line.strip():
                yield number, line

    def size(self) -> int:
        """The file's length in bytes (of the spooled copy, for stdin)."""
        assert self._stream is not None
        return os.fstat(self._stream.fileno()).st_size


def _records(source: _Input, session: str | None) -> Iterator[tuple[int, EventRecord]]:
    """The file's records with their line numbers, renamed to ``session`` if given."""
    for number, line in source.lines():
        try:
            record = decode_record(line)
        except msgspec.DecodeError as exc:
            raise CliError(f"{source.label}:{number}: not an event record: {exc}") from None
        if session is not None:
            record = msgspec.structs.replace(record, session_id=session)
        yield number, record


def _check_file(source: _Input, session: str | None) -> list[str]:
    """Check every line before the store is even opened; the sessions the file holds.

    Each line must be a record the store would accept as it is, and an event
    id may recur only as the same event (``export --all`` repeats inherited
    records), never at another place.

    :raises CliError: naming the first bad line.
    """
    label = source.label
    sessions: dict[str, int] = {}
    places: dict[tuple[str, str], tuple[str, int, int]] = {}
    for number, line in source.lines():
        try:
            record = check_event(decode_record(line))
        except ValueError as exc:
            raise CliError(f"{label}:{number}: not an event record: {exc}") from None
        sessions.setdefault(record.session_id, number)
        if session is not None and len(sessions) > 1:
            raise CliError(
                f"{label}:{number}: a second session ({record.session_id!r}, the first at "
                f"line {min(sessions.values())}); --session can rename only one"
            )
        place = (record.branch_id, record.sequence, number)
        seen = places.setdefault((record.session_id, record.event_id), place)
        if seen[:2] != place[:2]:
            raise CliError(
                f"{label}:{number}: event_id {record.event_id} is already at line {seen[2]} "
                f"as {record.session_id}/{seen[0]}#{seen[1]}"
            )
    if not sessions:
        raise CliError(f"{label}: no records to import")
    return sorted(sessions) if session is None else [session]


@dataclass
class _Run:
    """Consecutive records of one branch with contiguous sequences."""

    line: int
    records: list[EventRecord] = field(default_factory=list)

    @property
    def first(self) -> EventRecord:
        return self.records[0]


def _runs(records: Iterable[tuple[int, EventRecord]]) -> Iterator[_Run]:
    """The records in runs of at most :data:`BATCH`, as they come."""
    run: _Run | None = None
    for number, record in records:
        last = None if run is None else run.records[-1]
        if (
            run is None
            or last is None
            or last.session_id != record.session_id
            or last.branch_id != record.branch_id
            or last.sequence + 1 != record.sequence
            or len(run.records) >= BATCH
        ):
            if run is not None:
                yield run
            run = _Run(number)
        run.records.append(record)
    if run is not None:
        yield run


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
    #: The store's largest record, if it has one.
    max_record_size: int | None = None
    #: Heads in the store before the import, and the branches already merged.
    stored: dict[Key, int] = field(default_factory=dict)
    closed: dict[Key, str] = field(default_factory=dict)
    loaded: set[str] = field(default_factory=set)
    #: Heads as the import goes, and the event ids it adds.
    heads: dict[Key, int] = field(default_factory=dict)
    added: dict[Key, dict[int, str]] = field(default_factory=dict)
    #: Where each event id of the sessions it touches is stored (checking only).
    stored_ids: dict[Key, str] = field(default_factory=dict)
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
                if not self.write and info.head > info.fork_sequence:
                    await self._load_ids(info)
        return self.heads.get(key)

    async def _load_ids(self, info: BranchInfo) -> None:
        # An id the session holds elsewhere would be refused, or taken for a
        # retry, halfway through the writing pass.
        session, branch = info.session_id, info.branch_id
        async for record in self.store.iter_events(session, branch, info.fork_sequence + 1):
            self.stored_ids[session, record.event_id] = f"{session}/{branch}#{record.sequence}"

    def _check_new_ids(self, records: Sequence[EventRecord], line: int) -> None:
        for offset, record in enumerate(records):
            where = self.stored_ids.get((record.session_id, record.event_id))
            if where is not None:
                raise CliError(
                    f"{self.label}:{line + offset}: event_id {record.event_id} is already "
                    f"stored as {where}"
                )

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

    def _check_sizes(self, records: Sequence[EventRecord], line: int, limit: int) -> None:
        for offset, record in enumerate(records):
            try:
                encode_batch([record], limit)
            except InvalidEvent as exc:
                raise CliError(f"{self.label}:{line + offset}: {exc.reason}") from None

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
            await self.store.append_batch(rest)
        else:
            self._check_new_ids(rest, line)
            if self.max_record_size is not None:
                self._check_sizes(rest, line, self.max_record_size)
        self.added.setdefault(key, {}).update((r.sequence, r.event_id) for r in rest)
        self.imported += len(rest)
        self.heads[key] = rest[-1].sequence


async def import_(ctx: Context) -> int:
    """``eventstore import FILE [--session NEW]``: the inverse of ``export``.

    Nothing is written unless every line passes: the first bad one is named as
    ``FILE:LINE`` (exit 2).
    """
    args = ctx.args
    with _Input(args.file) as source, Progress("import", unit="bytes") as progress:
        size = source.size()
        source.progress = progress
        progress.restart("import 1/3, checking the file", size)
        sessions = _check_file(source, args.session)
        async with ctx.writer(create=True) as store:
            # Check against the store (nobody else can write: we hold the lock), then write.
            for write in (False, True):
                phase = "3/3, writing" if write else "2/3, checking against the store"
                progress.restart(f"import {phase}", size)
                importer = _Importer(store, source.label, write, store.max_record_size)
                previous: _Run | None = None
                for run in _runs(_records(source, args.session)):
                    await importer.apply(run, previous)
                    previous = run
    summary = {
        "sessions": sessions,
        "imported": importer.imported,
        "already_present": importer.present,
        "branches_created": importer.created,
    }
    ctx.result(
        summary,
        f"imported {importer.imported} events into {', '.join(sessions)} "
        f"({importer.present} already present, "
        f"{plural(importer.created, 'branch', 'branches')} created)",
    )
    return EXIT_OK
