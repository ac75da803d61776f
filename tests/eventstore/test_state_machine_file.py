"""The store state machine over ``FileEventStore``, with reopen and crash rules.

The crash hook stands in for a killed process. In-process, bytes that a write
acknowledged are in the page cache and survive any crash of the process, so
what a real kill adds is only bytes that were *not* acknowledged: a torn last
line in branch files and a half-written manifest temp file. The hook writes
exactly those, and the machine then checks that every acknowledged event is
still there and nothing else showed up.

The damage hook does what no crash does: it rewrites acknowledged lines (one
twice, two swapped, one of another session or branch), and the machine checks
that the store reports them rather than reading them as history.

The manifest-damage hook attacks the branch graph (issue 11, D2, D3, D5): a
branch id pointing out of the root, a parent cycle, a lost manifest, a lost
branch file; the store must report each rather than answer from it.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from eventstore.file import FileEventStore, FileOps
from eventstore.file._leftover import leftover_problem
from eventstore.testing import store_state_machine

#: Unacknowledged bytes a crash can leave at the end of a branch file.
TORN_TAILS = (
    b'{"session_id":"s1","branch_id":"main","seq',
    b"\x00\x00\x00\x00",
    b'{"not": "a record"}\n',
)

#: 500 examples per CI run. Shrinking a disk-backed program can outlast the
#: per-test timeout, so CI reports the failing program as found, with the blob
#: to replay it (``@reproduce_failure``) and shrink it locally.
FILE_SETTINGS = settings(
    max_examples=500,
    stateful_step_count=20,
    deadline=None,
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


async def crash(store: FileEventStore) -> None:
    """Stop the store, then leave what a process killed mid-write leaves."""
    await store.close()
    for n, path in enumerate(sorted(Path(store.root).glob("*/*.jsonl"))):
        with path.open("ab") as log:
            log.write(TORN_TAILS[n % len(TORN_TAILS)])
    for n, session in enumerate(sorted(p for p in Path(store.root).iterdir() if p.is_dir())):
        (session / f".branches.json.crash{n}.tmp").write_bytes(b'[{"session_id": "s1", "bra')


def damage_lines(
    store: FileEventStore, session_id: str, branch_id: str, index: int, how: str
) -> Callable[[], None]:
    """Damage the branch file's lines ``index`` and ``index + 1`` (``LINE_DAMAGE``)."""
    path = Path(store.root) / session_id / f"{branch_id}.jsonl"
    original = path.read_bytes()
    lines = original.splitlines(keepends=True)
    if how == "duplicate":
        lines[index + 1] = lines[index]
    elif how == "swap":
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    else:
        # The encoder writes session_id and branch_id first: swap in other ones.
        owner = b'{"session_id":"%s","branch_id":"%s",' % (session_id.encode(), branch_id.encode())
        other = ("intruder", branch_id) if how == "other-session" else (session_id, "b.other")
        assert lines[index].startswith(owner), lines[index]
        intruder = b'{"session_id":"%s","branch_id":"%s",' % tuple(o.encode() for o in other)
        lines[index] = intruder + lines[index][len(owner) :]
    damaged = b"".join(lines)
    path.write_bytes(damaged)

    def undo() -> None:
        assert path.read_bytes() == damaged, f"the store rewrote the damaged {path}"
        path.write_bytes(original)

    return undo


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _not_a_leftover(path: Path, session_id: str) -> bool:
    ops = FileOps()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return size > 0 and leftover_problem(ops, fd, session_id, path.stem, size) is not None
    finally:
        os.close(fd)


def damage_manifest(
    store: FileEventStore, session_id: str, how: str
) -> tuple[str | None, Callable[[], None]] | None:
    """Damage the session's branch graph (``MANIFEST_DAMAGE``); ``None`` if undetectable."""
    folder = Path(store.root) / session_id
    manifest_path = folder / "branches.json"
    manifest = json.loads(manifest_path.read_bytes())
    entries = {entry["branch_id"]: entry for entry in manifest["branches"]}
    before = _files(folder)
    victim = Path(store.root).parent / f"victim-{Path(store.root).name}.jsonl"
    lost: str | None = None
    if how == "hostile-id":
        victim.write_bytes(b"precious\n")
        hostile = dict(next(iter(entries.values())), branch_id=f"../../{victim.stem}")
        manifest["branches"].append(dict(hostile, parent_branch=None, fork_sequence=0))
    elif how == "parent-cycle":
        forks = [entry for entry in entries.values() if entry["parent_branch"] is not None]
        child = forks[0] if forks else next(iter(entries.values()))
        entries[child["parent_branch"] or child["branch_id"]]["parent_branch"] = child["branch_id"]
    elif how == "lost-manifest":
        logs = [p for p in folder.glob("*.jsonl") if _not_a_leftover(p, session_id)]
        if not logs:
            return None  # only what a crash leaves: honestly a new session
    else:
        known = [
            name
            for name, entry in sorted(entries.items())
            if entry.get("known_head", 0) > entry["fork_sequence"]
            and (folder / f"{name}.jsonl").exists()
        ]
        if not known:
            return None
        lost = known[0]
    if how == "lost-manifest":
        manifest_path.unlink()
    elif how == "lost-file":
        (folder / f"{lost}.jsonl").unlink()
    else:
        manifest_path.write_text(json.dumps(manifest))
    damaged = _files(folder)

    def undo() -> None:
        assert _files(folder) == damaged, f"the store changed the damaged {folder}"
        if how == "hostile-id":
            assert victim.read_bytes() == b"precious\n"
            assert not victim.with_name(victim.name + ".torn").exists()
            victim.unlink()
        for name, data in before.items():
            (folder / name).write_bytes(data)

    return lost, undo


def file_machine(root: Path) -> type[RuleBasedStateMachine]:
    counter = itertools.count()

    def fresh() -> FileEventStore:
        # The durability mode does not change what a process crash keeps, and
        # "write" keeps 500 examples within the CI budget on a shared disk.
        return FileEventStore(root / f"example-{next(counter)}", durability="write")

    def reopen(old: FileEventStore) -> FileEventStore:
        return FileEventStore(old.root, durability=old.durability)

    return store_state_machine(
        fresh,
        reopen=reopen,
        crash=crash,
        damage_lines=damage_lines,
        damage_manifest=damage_manifest,
    )


def test_file_store_machine(tmp_path: Path) -> None:
    run_state_machine_as_test(file_machine(tmp_path), settings=FILE_SETTINGS)


def test_crash_leaves_torn_tails_aside(tmp_path: Path) -> None:
    """The crash hook's damage is real: the reopened store cut it off into ``.torn``."""
    import asyncio

    from eventstore import EventRecord

    async def scenario() -> None:
        store = FileEventStore(tmp_path / "root")
        async with store:
            await store.append(EventRecord.new("s1", "main", 1, "note"))
        await crash(store)  # closing twice is allowed; the damage is what matters
        async with FileEventStore(tmp_path / "root") as again:
            assert [r.sequence for r in await again.read("s1")] == [1]
        torn = tmp_path / "root" / "s1" / "main.jsonl.torn"
        assert TORN_TAILS[0] in torn.read_bytes()

    asyncio.run(scenario())


def test_file_store_machine_fsync(tmp_path: Path) -> None:
    """A short run with the default durability: group commit on the real sync path."""
    counter = itertools.count()

    def fresh() -> FileEventStore:
        return FileEventStore(tmp_path / f"fsync-{next(counter)}", durability="fsync")

    machine = store_state_machine(fresh, reopen=lambda old: FileEventStore(old.root), crash=crash)
    run_state_machine_as_test(
        machine,
        settings=settings(FILE_SETTINGS, max_examples=40),
    )


def test_file_store_machine_in_flight(tmp_path: Path) -> None:
    """Crashes while a batch (often a new branch's first) is still being written.

    Whatever the crash leaves of it (nothing, all of it, an orphan file the
    manifest does not name) must be all or nothing and trouble no later step.
    """
    counter = itertools.count()

    def fresh() -> FileEventStore:
        return FileEventStore(tmp_path / f"in-flight-{next(counter)}", durability="write")

    def reopen(old: FileEventStore) -> FileEventStore:
        return FileEventStore(old.root, durability=old.durability)

    machine = store_state_machine(fresh, reopen=reopen, crash=crash, in_flight=True)
    run_state_machine_as_test(machine, settings=settings(FILE_SETTINGS, max_examples=150))
