"""The branch log (``branches.log``): forks in a big session append a line, not a manifest.

Its lines are input like the manifest (issue 11's rules): a repeated or
missing line, a branch that changes its fork point, an unknown parent, a
cycle, a bad id, a log without its manifest, a link: each refused as
:class:`CorruptLog` naming the log. A torn last line is a kill's leftover:
ignored by readers, cut by a writer, reported by ``verify``.
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
from eventstore.file import verify
from eventstore.file._branch_log import BRANCH_LOG, COMPACT_AFTER, LOG_FROM

from ._file_helpers import ev

#: Branches of the session :func:`_big` makes: enough for forks to go to the log.
BIG = LOG_FROM + 4


async def _big(root: Path, extra: int = 0) -> None:
    """Session ``s``: main 1..3, forks ``b1..`` at 3 (the later ones logged), ``extra`` more."""
    async with FileEventStore(root) as store:
        await store.append_batch([ev("s", n) for n in (1, 2, 3)])
        for n in range(1, BIG + extra):
            await store.create_branch("s", f"b{n}")


def _log(root: Path) -> Path:
    return root / "s" / BRANCH_LOG


def _lines(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _log(root).read_bytes().splitlines()]


def _write_lines(root: Path, lines: list[dict[str, Any]], tail: bytes = b"") -> None:
    _log(root).write_bytes(b"".join(json.dumps(line).encode() + b"\n" for line in lines) + tail)


async def test_a_fork_in_a_big_session_appends_one_line_and_leaves_the_manifest(
    tmp_path: Path,
) -> None:
    await _big(tmp_path)
    manifest = (tmp_path / "s" / "branches.json").read_bytes()
    before = _lines(tmp_path)
    async with FileEventStore(tmp_path) as store:
        info = await store.create_branch("s", "new", fork_sequence=2)
        syncs = store.statistics().syncs
        await store.create_branch("s", "newer", from_branch="new")
        # One sync a fork: the log's, no manifest, no directory.
        assert store.statistics().syncs == syncs + 1
    assert (tmp_path / "s" / "branches.json").read_bytes() == manifest
    after = _lines(tmp_path)
    assert after[: len(before)] == before
    assert [line["branch"]["branch_id"] for line in after[len(before) :]] == ["new", "newer"]
    assert after[-1]["n"] == after[-2]["n"] + 1
    async with FileEventStore(tmp_path) as store:
        assert await store.branch_info("s", "new") == info
        assert (await store.branch_info("s", "newer")).parent_branch == "new"
        assert len(await store.list_branches("s")) == BIG + 2
        assert [r.sequence for r in await store.read("s", "newer")] == [1, 2]
    assert verify(tmp_path).ok


async def test_a_close_is_logged_and_survives_a_reopen(tmp_path: Path) -> None:
    await _big(tmp_path)
    async with FileEventStore(tmp_path) as store:
        await store.close_branch("s", "b2")
    assert _lines(tmp_path)[-1]["branch"]["closed_at"] is not None
    async with FileEventStore(tmp_path) as store:
        assert (await store.branch_info("s", "b2")).closed
        with pytest.raises(Exception, match="closed"):
            await store.append(ev("s", 4, "b2"))


async def test_the_log_is_folded_in_once_it_is_as_long_as_the_manifest(tmp_path: Path) -> None:
    await _big(tmp_path, extra=COMPACT_AFTER + BIG)
    manifest = json.loads((tmp_path / "s" / "branches.json").read_bytes())
    # Folded at least once: the manifest names logged branches and the last line folded.
    assert manifest["log_lines"] >= COMPACT_AFTER
    assert len(_lines(tmp_path)) < len(manifest["branches"])
    async with FileEventStore(tmp_path) as store:
        assert len(await store.list_branches("s")) == 2 * BIG + COMPACT_AFTER
    assert verify(tmp_path).ok


async def test_a_merge_folds_the_log_into_the_manifest(tmp_path: Path) -> None:
    await _big(tmp_path)
    async with FileEventStore(tmp_path) as store:
        await store.append(ev("s", 4, f"b{BIG - 1}"))
        await store.merge_branch("s", f"b{BIG - 1}", "main")
    assert _log(tmp_path).read_bytes() == b""
    names = {
        b["branch_id"]
        for b in json.loads((tmp_path / "s" / "branches.json").read_bytes())["branches"]
    }
    assert len(names) == BIG
    async with FileEventStore(tmp_path) as store:
        assert (await store.branch_info("s", f"b{BIG - 1}")).merged_into == "main"
        assert await store.head("s") == 4


async def test_a_reader_sees_a_logged_fork_of_the_writer(tmp_path: Path) -> None:
    await _big(tmp_path)
    async with (
        FileEventStore(tmp_path) as writer,
        FileEventStore(tmp_path, read_only=True) as reader,
    ):
        assert len(await reader.list_branches("s")) == BIG
        await writer.create_branch("s", "live")
        assert (await reader.branch_info("s", "live")).head == 3


async def test_lines_the_manifest_folded_in_already_are_skipped(tmp_path: Path) -> None:
    # A crash between the manifest's rename and the log's truncation leaves them.
    await _big(tmp_path)
    lines = _lines(tmp_path)
    path = tmp_path / "s" / "branches.json"
    manifest = json.loads(path.read_bytes())
    manifest["branches"] += [line["branch"] for line in lines]
    manifest["log_lines"] = lines[-1]["n"]
    path.write_text(json.dumps(manifest))
    async with FileEventStore(tmp_path) as store:
        assert len(await store.list_branches("s")) == BIG
        await store.create_branch("s", "after")
    assert _lines(tmp_path)[-1] == {**_lines(tmp_path)[-1], "n": lines[-1]["n"] + 1}
    async with FileEventStore(tmp_path) as store:
        assert len(await store.list_branches("s")) == BIG + 1
    assert verify(tmp_path).ok


# -- a torn last line ------------------------------------------------------------------


@pytest.mark.parametrize("tail", [b'{"n": 99, "bra', b"garbage\n", b"\x00\x00"])
async def test_a_torn_last_line_is_ignored_then_cut(tmp_path: Path, tail: bytes) -> None:
    await _big(tmp_path)
    good = _log(tmp_path).read_bytes()
    with _log(tmp_path).open("ab") as stream:
        stream.write(tail)
    report = verify(tmp_path)
    assert [p.path for p in report.damage] == [str(_log(tmp_path))]
    assert "torn last line" in report.damage[0].reason
    async with FileEventStore(tmp_path, read_only=True) as reader:
        assert len(await reader.list_branches("s")) == BIG
    assert _log(tmp_path).read_bytes() == good + tail  # a reader changes nothing
    async with FileEventStore(tmp_path) as store:
        assert len(await store.list_branches("s")) == BIG
        assert _log(tmp_path).read_bytes() == good
        await store.create_branch("s", "after")
    async with FileEventStore(tmp_path) as store:
        assert (await store.branch_info("s", "after")).head == 3
    assert verify(tmp_path).ok


# -- hostile lines -----------------------------------------------------------------------

Edit = Callable[[list[dict[str, Any]]], None]


def _line(lines: list[dict[str, Any]], branch_id: str, **change: Any) -> dict[str, Any]:
    last = lines[-1]
    return {"n": last["n"] + 1, "branch": {**last["branch"], "branch_id": branch_id, **change}}


HOSTILE: list[Any] = [
    pytest.param(lambda ls: ls.append(dict(ls[-1])), "line .*, expected", id="repeated"),
    pytest.param(
        lambda ls: ls.append({**_line(ls, "x"), "n": ls[-1]["n"] + 2}),
        "line .*, expected",
        id="gap",
    ),
    pytest.param(
        lambda ls: ls.append(_line(ls, "x", parent_branch="nowhere")),
        "forks from unknown branch 'nowhere'",
        id="unknown-parent",
    ),
    pytest.param(
        lambda ls: ls.append(_line(ls, "x", parent_branch="x")),
        "parent cycle",
        id="self-cycle",
    ),
    pytest.param(
        lambda ls: ls.append(_line(ls, "../../outside/victim")),
        "is not a valid identifier",
        id="hostile-id",
    ),
    pytest.param(
        lambda ls: ls.append(_line(ls, "b2", fork_sequence=1)),
        "changes its fork point",
        id="refork",
    ),
    pytest.param(
        lambda ls: ls.append(_line(ls, "main", parent_branch="b2", fork_sequence=1)),
        "changes its fork point",
        id="reparent-into-cycle",
    ),
    pytest.param(
        lambda ls: ls.append({"n": 0, "branch": ls[-1]["branch"]}),
        "unreadable branch log line|expected",
        id="line-zero",
    ),
]


Call = Callable[[FileEventStore], Awaitable[Any]]
READS: list[Call] = [
    lambda store: store.read("s"),
    lambda store: store.head("s"),
    lambda store: store.list_branches("s"),
    lambda store: store.branch_info("s", "b2"),
]
WRITES: list[Call] = [
    lambda store: store.append(ev("s", 4)),
    lambda store: store.create_branch("s", "g"),
]


async def _all_refuse(root: Path, match: str) -> None:
    for read_only in (False, True):
        async with FileEventStore(root, read_only=read_only) as store:
            for call in READS if read_only else READS + WRITES:
                with pytest.raises(CorruptLog, match=match) as info:
                    await asyncio.wait_for(call(store), 10)
                assert info.value.path == str(_log(root))


@pytest.mark.parametrize(("edit", "match"), HOSTILE)
async def test_a_hostile_log_line_is_corrupt(tmp_path: Path, edit: Edit, match: str) -> None:
    await _big(tmp_path)
    lines = _lines(tmp_path)
    edit(lines)
    # Not the last line: a damaged last line would be a torn tail.
    _write_lines(tmp_path, [*lines, _line(lines, "after")])
    before = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}
    await _all_refuse(tmp_path, match)
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()} == before
    assert not verify(tmp_path).ok


async def test_an_unreadable_line_before_the_last_is_corrupt(tmp_path: Path) -> None:
    await _big(tmp_path)
    lines = _lines(tmp_path)
    _write_lines(tmp_path, lines[:1], b"not json\n" + json.dumps(lines[-1]).encode() + b"\n")
    await _all_refuse(tmp_path, "unreadable branch log line")


async def test_a_log_without_its_manifest_is_a_lost_manifest(tmp_path: Path) -> None:
    await _big(tmp_path)
    (tmp_path / "s" / "branches.json").unlink()
    async with FileEventStore(tmp_path) as store:
        with pytest.raises(CorruptLog, match="manifest was lost"):
            await store.read("s")
        with pytest.raises(CorruptLog, match="manifest was lost"):
            await store.append(ev("s", 1))
    assert any("manifest was lost" in p.reason for p in verify(tmp_path).damage)


async def test_a_symlinked_log_is_refused(tmp_path: Path) -> None:
    await _big(tmp_path)
    outside = tmp_path / "outside.log"
    os.replace(_log(tmp_path), outside)
    _log(tmp_path).symlink_to(outside)
    async with FileEventStore(tmp_path) as store:
        with pytest.raises(CorruptLog, match="symbolic link") as info:
            await store.create_branch("s", "g")
        assert info.value.path == str(_log(tmp_path))
    assert outside.read_bytes().count(b"\n") == BIG - LOG_FROM
