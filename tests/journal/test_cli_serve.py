"""``eventstore serve``: safe by default, the token from a flag or the environment."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eventstore import EventRecord
from eventstore.file import FileEventStore
from journal.cli import main
from journal.cli._serve import is_loopback

from .test_cli import TIMEOUT, _env


async def _populate(root: Path) -> None:
    async with FileEventStore(root) as store:
        await store.append(EventRecord.new("s1", "main", 1, "note", {}))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    asyncio.run(_populate(tmp_path / "store"))
    return tmp_path / "store"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_refuses_a_public_host_without_a_token(
    root: Path, host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVENTSTORE_TOKEN", raising=False)
    assert main(["--root", str(root), "serve", "--host", host]) == 2
    err = capsys.readouterr().err
    assert "without a token" in err and "--insecure" in err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serves_read_only_with_the_token_from_the_environment(root: Path) -> None:
    port = _free_port()
    env = _env()
    env["EVENTSTORE_TOKEN"] = "from-env"
    server = subprocess.Popen(
        [sys.executable, "-m", "journal", "--root", str(root), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/sessions"
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                refused = httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert refused.status_code == 401
        found = httpx.get(url, headers={"Authorization": "Bearer from-env"}, timeout=5)
        assert [s["session_id"] for s in found.json()["sessions"]] == ["s1"]
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=TIMEOUT)
    assert server.returncode == 0, err.decode()
    assert b"token required" in err


_WITHOUT_EXTRA = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"starlette", "sse_starlette", "uvicorn"}:
            raise ImportError(f"blocked {name}")

sys.meta_path.insert(0, Block())
import journal, journal.cli
assert "starlette" not in sys.modules
sys.exit(journal.cli.main(sys.argv[1:]))
"""


def test_the_library_and_cli_work_without_the_web_extra(root: Path) -> None:
    args = ["--root", str(root), "serve"]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, *args],
        capture_output=True,
        timeout=TIMEOUT,
        env=_env(),
        check=False,
    )
    assert done.returncode == 2, done.stderr.decode()
    assert b"needs the web extra" in done.stderr
