"""``eventstore import`` is all or nothing: every line is checked before the first
write, and a refusal names ``FILE:LINE``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path

import msgspec
import pytest

from eventstore import EventRecord
from eventstore.file import FileEventStore
from journal.cli import main

from .test_cli import run, snapshot


def _line(
    session: str, sequence: int, data: object = None, fields: dict[str, object] | None = None
) -> bytes:
    record = EventRecord.new(session, "main", sequence, "message", data)
    return msgspec.json.encode({**msgspec.to_builtins(record), **(fields or {})}) + b"\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A store holding session ``kept`` (main 1..2)."""
    path = tmp_path / "store"

    async def fill() -> None:
        async with FileEventStore(path) as store:
            for sequence in (1, 2):
                await store.append(EventRecord.new("kept", "main", sequence, "k"))

    asyncio.run(fill())
    return path


def _import(
    root: Path, path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    code = main(["--root", str(root), "import", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.err


def _refused(
    root: Path, path: Path, capsys: pytest.CaptureFixture[str], where: str, *extra: str
) -> str:
    before = snapshot(root)
    code, err = _import(root, path, capsys, *extra)
    assert code == 2, err
    assert err.count("\n") == 1
    assert err.startswith(f"eventstore: error: {path}:{where}: "), err
    assert snapshot(root) == before
    return err


def test_an_oversized_record_in_a_later_session_writes_nothing(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.jsonl"
    path.write_bytes(
        _line("first", 1)
        + _line("first", 2)
        + _line("second", 1)
        + _line("second", 2, "x" * (2 << 20))
        + _line("second", 3)
    )
    err = _refused(root, path, capsys, "4")
    assert "above max_record_size" in err
    assert not (root / "first").exists()


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"kind": "bad\u0000kind"}, "NUL"),
        ({"kind": ""}, "kind"),
        ({"sequence": 2**63}, "sequence"),
        ({"session_id": "../x"}, "session_id"),
    ],
)
def test_a_record_no_store_would_take_is_named(
    root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, object],
    what: str,
) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [_line("new", 1), _line("new", 2), _line("new", 3, fields=fields)]
    path.write_bytes(b"".join(lines))
    err = _refused(root, path, capsys, "3")
    assert what in err


def test_an_event_id_at_two_places_is_refused(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _line("new", 1)
    again = _line("new", 2, fields={"event_id": msgspec.json.decode(first)["event_id"]})
    path = tmp_path / "twice.jsonl"
    path.write_bytes(first + b"\n" + again)
    err = _refused(root, path, capsys, "3")
    assert "already at line 1" in err


def test_the_same_record_twice_is_one_event(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ``export --all`` repeats inherited records: the same event at the same place.
    first = _line("new", 1)
    path = tmp_path / "repeat.jsonl"
    path.write_bytes(first + first + _line("new", 2))
    code, err = _import(root, path, capsys)
    assert code == 0, err

    async def heads() -> int:
        async with FileEventStore(root, read_only=True) as store:
            return await store.head("new")

    assert asyncio.run(heads()) == 2


def test_a_second_session_with_rename_is_named(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(_line("a", 1) + _line("a", 2) + _line("b", 1))
    err = _refused(root, path, capsys, "3", "--session", "renamed")
    assert "--session can rename only one" in err


def test_a_long_import_from_a_pipe(root: Path, tmp_path: Path) -> None:
    # More than one batch, through a named pipe: the file is read more than once.
    count = 2500
    data = b"".join(_line("piped", n, {"n": n}) for n in range(1, count + 1))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        # A reader that never came is let go below: then the pipe is broken.
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as pipe:
            pipe.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        done = run(root, "import", str(fifo))
    finally:
        if feeder.is_alive():
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        feeder.join(timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    assert f"imported {count} events into piped".encode() in done.stdout
    assert run(root, "import", "-", stdin=data).returncode == 0

    async def read() -> list[int]:
        async with FileEventStore(root, read_only=True) as store:
            return [r.data["n"] async for r in store.iter_events("piped")]

    assert asyncio.run(read()) == list(range(1, count + 1))


def test_an_event_id_the_store_holds_elsewhere_is_refused_first(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def stored_id() -> str:
        async with FileEventStore(root, read_only=True) as store:
            return (await store.read("kept"))[0].event_id

    path = tmp_path / "reused.jsonl"
    path.write_bytes(
        _line("fresh", 1)
        + _line("kept", 3)
        + _line("kept", 4, fields={"event_id": asyncio.run(stored_id())})
    )
    err = _refused(root, path, capsys, "3")
    assert "is already stored as kept/main#1" in err
