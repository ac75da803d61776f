"""What the file store reads from disk is input (issue 11, D2, D3, D5, D12).

A hostile or damaged ``branches.json``, a lost manifest, a deleted branch file,
a symbolic link: each is reported as :class:`CorruptLog` naming the file, never
followed out of the root, never walked forever, never taken for a new session.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from eventstore import CorruptLog, FileEventStore

from ._file_helpers import ev

Call = Callable[[FileEventStore], Awaitable[Any]]
Calls = list[Call]


class _Write:
    """A call that writes: a read-only store refuses it before reading anything."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def __call__(self, store: FileEventStore) -> Awaitable[Any]:
        return self.call(store)


#: Every way in: each must refuse the damaged session.
ALL_CALLS: Calls = [
    lambda store: store.read("s"),
    lambda store: store.read("s", "f"),
    lambda store: store.head("s"),
    lambda store: store.list_branches("s"),
    lambda store: store.branch_info("s", "f"),
    _Write(lambda store: store.append(ev("s", 4))),
    _Write(lambda store: store.create_branch("s", "g")),
]


async def _session(root: Path) -> None:
    """Session ``s``: main 1..3 (a batch, then one), ``f`` forked at 3 without events."""
    async with FileEventStore(root) as store:
        await store.append_batch([ev("s", 1), ev("s", 2)])
        await store.append(ev("s", 3))
        await store.create_branch("s", "f")


def _edit(root: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = root / "s" / "branches.json"
    manifest = json.loads(path.read_bytes())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


def _branch(manifest: dict[str, Any], branch_id: str) -> dict[str, Any]:
    [entry] = [b for b in manifest["branches"] if b["branch_id"] == branch_id]
    return entry


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


async def _all_refuse(root: Path, path: Path, match: str, *, calls: Calls = ALL_CALLS) -> None:
    for read_only in (False, True):
        async with FileEventStore(root, read_only=read_only) as store:
            for call in calls:
                if read_only and isinstance(call, _Write):
                    continue
                with pytest.raises(CorruptLog, match=match) as info:
                    # A walk that never ends would block the loop: the timeout cannot fire.
                    await asyncio.wait_for(call(store), 10)
                assert info.value.path == str(path)


# -- D2: ids, parents, fork points and merges read from branches.json ------------------


async def test_a_hostile_branch_id_opens_nothing_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    await _session(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.jsonl").write_bytes(b"precious\n")

    def hostile(manifest: dict[str, Any]) -> None:
        entry = dict(_branch(manifest, "f"), branch_id="../../outside/victim")
        manifest["branches"].append(entry)

    path = _edit(root, hostile)
    await _all_refuse(root, path, "'../../outside/victim' is not a valid identifier")
    assert _snapshot(outside) == {"victim.jsonl": b"precious\n"}


def _parent(value: object) -> Callable[[dict[str, Any]], None]:
    return lambda m: _branch(m, "f").update(parent_branch=value)


def _merged(value: object) -> Callable[[dict[str, Any]], None]:
    return lambda m: _branch(m, "f").update(merged_into=value)


def _root_fork(m: dict[str, Any]) -> None:
    _branch(m, "main").update(fork_sequence=2)


def _pending_self(m: dict[str, Any]) -> None:
    m["pending_merge"] = {
        "source": "f",
        "target": "f",
        "target_head": 3,
        "target_size": 0,
        "count": 1,
    }


def _pending_negative(m: dict[str, Any]) -> None:
    _pending_self(m)
    m["pending_merge"].update(target="main", target_size=-5)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_parent("../main"), "'f' forks from unknown branch '../main'"),
        (_parent("ghost"), "'f' forks from unknown branch 'ghost'"),
        (lambda m: _branch(m, "f").update(fork_sequence=-1), r"fork_sequence"),
        (lambda m: _branch(m, "f").update(fork_sequence="3"), r"fork_sequence"),
        (lambda m: _branch(m, "f").update(known_head=-2), r"known_head"),
        (_root_fork, "'main' has no parent but fork point 2"),
        (_merged("f"), "'f' was merged into unknown branch 'f'"),
        (_merged("/etc"), "'f' was merged into unknown branch '/etc'"),
        (lambda m: m["branches"].append(_branch(m, "f")), "'f' is listed twice"),
        (_pending_self, "merges 'f' into itself"),
        (_pending_negative, r"target_size"),
    ],
)
async def test_a_manifest_field_out_of_range_is_corrupt(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], match: str
) -> None:
    await _session(tmp_path)
    path = _edit(tmp_path, change)
    before = _snapshot(tmp_path / "s")
    await _all_refuse(tmp_path, path, match)
    assert _snapshot(tmp_path / "s") == before


# -- D3: a parent cycle, a fork point beyond the parent ---------------------------------


@pytest.mark.parametrize("cycle", ["two", "self"])
async def test_a_parent_cycle_is_corrupt_not_a_hang(tmp_path: Path, cycle: str) -> None:
    await _session(tmp_path)

    def loop(m: dict[str, Any]) -> None:
        if cycle == "two":
            _branch(m, "main").update(parent_branch="f", fork_sequence=1)
        else:
            _branch(m, "f").update(parent_branch="f")

    path = _edit(tmp_path, loop)
    await _all_refuse(tmp_path, path, "parent cycle")


async def test_a_fork_beyond_what_its_parent_holds_is_corrupt(tmp_path: Path) -> None:
    # Before: head("s", "f") said 9 while read() returned 3 events.
    await _session(tmp_path)
    path = _edit(tmp_path, lambda m: _branch(m, "f").update(fork_sequence=9, known_head=0))
    calls: Calls = [
        lambda store: store.read("s", "f"),
        lambda store: store.read("s", "f", 2, 2),
        lambda store: store.list_branches("s"),
    ]
    await _all_refuse(tmp_path, path, "'f' forks 'main' at 9, beyond its head 3", calls=calls)


# -- D5: a store never starts over on top of evidence of history ------------------------


@pytest.mark.parametrize("first", [1, 2])
async def test_a_lost_manifest_is_corrupt_not_a_new_session(tmp_path: Path, first: int) -> None:
    async with FileEventStore(tmp_path) as store:
        await store.append_batch([ev("s", n) for n in range(1, first + 1)])
        await store.append(ev("s", first + 1))
    (tmp_path / "s" / "branches.json").unlink()
    before = _snapshot(tmp_path / "s")
    main = tmp_path / "s" / "main.jsonl"
    calls: Calls = [
        lambda store: store.read("s"),
        lambda store: store.head("s"),
        lambda store: store.list_branches("s"),
        _Write(lambda store: store.append(ev("s", 1))),
        _Write(lambda store: store.create_branch("s", "g")),
    ]
    await _all_refuse(tmp_path, main, "the branch manifest was lost", calls=calls)
    assert _snapshot(tmp_path / "s") == before


async def test_a_fork_whose_manifest_entry_was_lost_is_not_set_aside(tmp_path: Path) -> None:
    # Its events begin after its fork point: only a manifest naming it let them in.
    await _session(tmp_path)
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s", 4, branch="f"))
    _edit(tmp_path, lambda m: m["branches"].remove(_branch(m, "f")))
    before = _snapshot(tmp_path / "s")
    async with FileEventStore(tmp_path) as store:
        with pytest.raises(CorruptLog, match="starts at sequence 4") as info:
            await store.create_branch("s", "f")
        assert info.value.path == str(tmp_path / "s" / "f.jsonl")
    assert _snapshot(tmp_path / "s") == before


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
async def test_a_lost_branch_file_is_corrupt_not_empty(tmp_path: Path, damage: str) -> None:
    await _session(tmp_path)
    main = tmp_path / "s" / "main.jsonl"
    if damage == "deleted":
        main.unlink()
    else:
        main.write_bytes(main.read_bytes().splitlines(keepends=True)[0])
    calls: Calls = [
        lambda store: store.read("s"),
        lambda store: store.read("s", "f"),
        lambda store: store.head("s"),
        _Write(lambda store: store.append(ev("s", 1))),
        _Write(lambda store: store.append(ev("s", 2))),
    ]
    await _all_refuse(tmp_path, main, "acknowledged events are missing", calls=calls)
    assert not (tmp_path / "s" / "main.jsonl.torn").exists()


async def test_a_deleted_parent_is_found_by_its_forks_in_an_older_manifest(
    tmp_path: Path,
) -> None:
    # A manifest written before it recorded known heads: the fork point is the evidence.
    await _session(tmp_path)

    def older(m: dict[str, Any]) -> None:
        for entry in m["branches"]:
            del entry["known_head"]

    path = _edit(tmp_path, older)
    (tmp_path / "s" / "main.jsonl").unlink()
    calls: Calls = [
        lambda store: store.read("s", "f"),
        lambda store: store.list_branches("s"),
    ]
    await _all_refuse(tmp_path, path, "'f' forks 'main' at 3, beyond its head 0", calls=calls)


async def test_a_crash_leftover_is_still_set_aside(tmp_path: Path) -> None:
    # The one legitimate unnamed file: a first write, whole or cut short.
    async with FileEventStore(tmp_path) as store:
        await store.append_batch([ev("s", n) for n in (1, 2, 3)])
    (tmp_path / "s" / "branches.json").unlink()
    main = tmp_path / "s" / "main.jsonl"
    main.write_bytes(main.read_bytes()[:-7])
    async with FileEventStore(tmp_path) as store:
        assert await store.read("s") == []
        stored = await store.append(ev("s", 1))
        assert await store.read("s") == [stored]


# -- D12: symbolic links are refused, naming them -----------------------------------


async def test_a_symlinked_session_directory_is_refused_by_name(tmp_path: Path) -> None:
    root = tmp_path / "root"
    elsewhere = tmp_path / "elsewhere"
    await _session(elsewhere)
    before = _snapshot(elsewhere / "s")
    root.mkdir()
    (root / "s").symlink_to(elsewhere / "s")
    await _all_refuse(root, root / "s", "symbolic link")
    assert _snapshot(elsewhere / "s") == before


@pytest.mark.parametrize("name", ["branches.json", "main.jsonl"])
async def test_a_symlinked_file_in_a_session_is_refused_by_name(tmp_path: Path, name: str) -> None:
    await _session(tmp_path)
    real = tmp_path / "s" / name
    moved = tmp_path / f"moved-{name}"
    os.replace(real, moved)
    real.symlink_to(moved)
    calls: Calls = [
        lambda store: store.read("s"),
        lambda store: store.head("s"),
        _Write(lambda store: store.append(ev("s", 4))),
    ]
    await _all_refuse(tmp_path, real, "symbolic link", calls=calls)
