"""Progress of ``verify``, ``export`` and ``import``: on a terminal's stderr only.

The commands run as subprocesses with stderr on a pseudo-terminal (read from
its master side) or on a pipe. The child starts with the display's delay and
redraw interval at zero, so a small store draws at once.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eventstore import EventRecord
from eventstore.file import FileEventStore
from journal.cli._progress import Progress

PROJECT = str(Path(__file__).resolve().parents[2])
TIMEOUT = 60
EVENTS = 300

#: The CLI with the display's timing zeroed, so a short command still draws.
CHILD = (
    "import sys; import journal.cli._progress as p; p.DELAY = p.INTERVAL = 0.0; "
    "from journal.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress") / "store"

    async def populate() -> None:
        async with FileEventStore(root) as store:
            records = [
                EventRecord.new("s1", "main", i, "note", {"i": i}) for i in range(1, EVENTS + 1)
            ]
            await store.append_batch(records)
            await store.create_branch("s1", "alt", fork_sequence=100)

    asyncio.run(populate())
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT, env.get("PYTHONPATH")]))
    return env


def _command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", CHILD, "--root", str(root), *args]


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every slave fd is closed
            return
        if not chunk:
            return
        into.extend(chunk)


def on_terminal(root: Path, *args: str, stdout_too: bool = False) -> tuple[int, bytes, bytes]:
    """Run with stderr (and with ``stdout_too`` stdout) on a pty; exit code, stdout, terminal."""
    master, slave = os.openpty()
    seen = bytearray()
    reader = threading.Thread(target=_drain, args=(master, seen))
    try:
        proc = subprocess.Popen(
            _command(root, *args),
            stdout=slave if stdout_too else subprocess.PIPE,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            env=_env(),
        )
        os.close(slave)
        slave = -1
        reader.start()
        out = b"" if proc.stdout is None else proc.stdout.read()
        code = proc.wait(TIMEOUT)
        reader.join(TIMEOUT)
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
        if proc.stdout is not None:
            proc.stdout.close()
    return code, out, bytes(seen)


def piped(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        _command(root, *args), capture_output=True, timeout=TIMEOUT, env=_env(), check=False
    )


@pytest.mark.parametrize("args", [("verify",), ("--json", "verify"), ("verify", "s1")])
def test_verify_shows_bytes_on_a_terminal_and_nothing_in_a_pipe(
    store_root: Path, args: tuple[str, ...]
) -> None:
    code, out, terminal = on_terminal(store_root, *args)
    assert code == 0
    text = terminal.decode()
    assert "verify: " in text and " of " in text and "B/s" in text and "left" in text
    assert "(100%)" in text
    # Cleared at the end: the last thing on the terminal is the erase.
    assert terminal.endswith(b"\r\x1b[K")

    done = piped(store_root, *args)
    assert done.returncode == 0
    assert done.stderr == b""
    assert done.stdout == out


def test_export_counts_records_unless_they_go_to_the_terminal(store_root: Path) -> None:
    code, out, terminal = on_terminal(store_root, "export", "s1")
    assert code == 0
    assert f"export: {EVENTS:,} of {EVENTS:,} records (100%)" in terminal.decode()
    done = piped(store_root, "export", "s1")
    assert done.stderr == b""
    assert done.stdout == out and len(out.splitlines()) == EVENTS

    # Records scrolling past on the same terminal are their own progress.
    code, _, terminal = on_terminal(store_root, "export", "s1", stdout_too=True)
    assert code == 0
    assert b"export:" not in terminal and b"\x1b[K" not in terminal


def test_import_shows_each_pass(store_root: Path, tmp_path: Path) -> None:
    dump = tmp_path / "s1.jsonl"
    dump.write_bytes(piped(store_root, "export", "s1", "--all").stdout)
    code, out, terminal = on_terminal(tmp_path / "new", "import", str(dump))
    assert code == 0, terminal
    text = terminal.decode()
    for phase in ("1/3, checking the file", "2/3, checking against the store", "3/3, writing"):
        assert f"import {phase}: " in text
    assert f"of {dump.stat().st_size / 1000:.1f} kB" in text
    assert out.startswith(f"imported {EVENTS} events".encode())

    done = piped(tmp_path / "again", "import", str(dump))
    assert done.returncode == 0
    assert done.stderr == b""
    assert done.stdout == out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_names_done_total_rate_and_time_left() -> None:
    progress = Progress("verify", 4_000_000, "bytes", _Tty())
    progress.advance(1_000_000)
    line = progress.line(progress._start + 2.0)
    assert line == "verify: 1.0 MB of 4.0 MB (25%), 500.0 kB/s, 6s left"

    records = Progress("export", 0, stream=_Tty())
    records.advance(1500)
    assert records.line(records._start + 1.0) == "export: 1,500 records, 1,500 records/s"


def test_nothing_is_drawn_off_a_terminal() -> None:
    stream = io.StringIO()
    with Progress("verify", 10, stream=stream) as progress:
        progress.advance(10)
    assert not progress.enabled
    assert stream.getvalue() == ""
