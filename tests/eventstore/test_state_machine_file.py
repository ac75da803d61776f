"""The store state machine over ``FileEventStore``, with reopen and crash rules.

The crash hook stands in for a killed process. In-process, bytes that a write
acknowledged are in the page cache and survive any crash of the process, so
what a real kill adds is only bytes that were *not* acknowledged: a torn last
line in branch files and a half-written manifest temp file. The hook writes
exactly those, and the machine then checks that every acknowledged event is
still there and nothing else showed up.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from eventstore.file import FileEventStore
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


def file_machine(root: Path) -> type[RuleBasedStateMachine]:
    counter = itertools.count()

    def fresh() -> FileEventStore:
        # The durability mode does not change what a process crash keeps, and
        # "write" keeps 500 examples within the CI budget on a shared disk.
        return FileEventStore(root / f"example-{next(counter)}", durability="write")

    def reopen(old: FileEventStore) -> FileEventStore:
        return FileEventStore(old.root, durability=old.durability)

    return store_state_machine(fresh, reopen=reopen, crash=crash)


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
