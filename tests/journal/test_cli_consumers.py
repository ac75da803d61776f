"""``eventstore consumers``, ``consumers reset`` and ``dead-letters`` (issue 15)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from eventstore import EventRecord, FileEventStore
from journal import Consumer, EventJournal
from journal.cli import main


async def _fail(event: EventRecord) -> None:
    raise RuntimeError(f"cannot handle {event.sequence}")


async def _none(seconds: float) -> None:
    return None


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    async with EventJournal(FileEventStore(tmp_path)) as journal:
        for n in range(3):
            await journal.record("s", "message", {"n": n})
        failing = Consumer(journal.store, "idx", _fail, max_attempts=2, sleep=_none)
        assert await failing.run_until_idle() == 3
        await failing.reset(1)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_consumers_lists_position_lag_and_dead_letters(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--root", str(root), "consumers")
    assert code == 0
    assert out.splitlines() == ["NAME  POSITION  LAG  DEAD  HOLDER", "idx          1    2     3  -"]
    code, out, _ = run(capsys, "--root", str(root), "consumers", "--json")
    assert json.loads(out) == {
        "name": "idx",
        "position": 1,
        "lag": 2,
        "dead_letters": 3,
        "holder": None,
    }


def test_dead_letters_shows_each_error(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--root", str(root), "dead-letters", "idx")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4 and lines[-1] == "3 dead letters for consumer idx"
    assert "s/main#2" in lines[1] and "RuntimeError: cannot handle 2" in lines[1]
    code, out, _ = run(capsys, "--root", str(root), "dead-letters", "idx", "--json")
    assert [json.loads(x)["sequence"] for x in out.splitlines()] == [1, 2, 3]


def test_reset_moves_the_checkpoint(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--root", str(root), "consumers", "reset", "idx", "--to", "3")
    assert (code, out) == (0, "consumer idx: position 1 -> 3\n")
    code, out, err = run(capsys, "--root", str(root), "consumers", "reset", "idx")
    assert code == 2 and "consumers reset NAME --to N" in err


async def test_reset_refuses_while_the_consumer_runs(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FileEventStore(root, read_only=True) as store:
        state = await store.consumer_state("idx")
        assert await state.acquire("running", 30)
        # The command runs its own event loop: off this one, in a thread.
        reset = ("--root", str(root), "consumers", "reset", "idx", "--to", "0")
        code, _, err = await asyncio.to_thread(run, capsys, *reset)
        assert code == 2 and "is running" in err
        code, out, _ = await asyncio.to_thread(run, capsys, "--root", str(root), "consumers")
        assert out.splitlines()[1].endswith("running")
        await state.release("running")
