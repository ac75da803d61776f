"""The ``eventstore`` command, driven the way a user drives it: as a subprocess.

One session-scoped store is populated once and only read; tests that write
(fork, merge, import, damage) work on a copy.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest

from eventstore import EventRecord
from eventstore._codec import decode_records
from eventstore.file import FileEventStore

TIMEOUT = 30
#: The checkout, so ``python -m journal`` works whatever the working directory.
PROJECT = str(Path(__file__).resolve().parents[2])


def _env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT, env.get("PYTHONPATH")]))
    return env


def run(
    root: Path | None, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    prefix = [] if root is None else ["--root", str(root)]
    return subprocess.run(
        [sys.executable, "-m", "journal", *prefix, *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        env=_env(env),
        check=False,
    )


def ok(root: Path | None, *args: str, stdin: bytes | None = None) -> str:
    done = run(root, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    return done.stdout.decode()


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


async def _populate(root: Path) -> None:
    async with FileEventStore(root) as store:
        steps = [
            ("message", {"role": "user", "text": "list /tmp"}),
            ("tool_call", {"name": "ls", "arguments": {"path": "/tmp"}}),
            ("tool_result", {"name": "ls", "output": ["a", "b"]}),
            ("message", {"role": "assistant", "text": "two files"}),
            ("tool_call", {"name": "cat", "arguments": {"path": "/tmp/a"}}),
        ]
        for sequence, (kind, data) in enumerate(steps, start=1):
            await store.append(EventRecord.new("demo", "main", sequence, kind, data))
        await store.create_branch("demo", "alt", fork_sequence=3)
        await store.append(EventRecord.new("demo", "alt", 4, "message", {"text": "retry"}))
        await store.append(EventRecord.new("demo", "alt", 5, "tool_call", {"name": "rm"}))
        await store.create_branch("demo", "side")
        await store.append(EventRecord.new("demo", "side", 6, "note", "side note"))
        await store.append(EventRecord.new("demo", "side", 7, "note", None))
        await store.merge_branch("demo", "side", "main")
        await store.append(EventRecord.new("other", "main", 1, "message", {"text": "hi"}))
        await store.append(EventRecord.new("other", "main", 2, "message", {"text": "bye"}))


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A populated root that no test changes."""
    root = tmp_path_factory.mktemp("cli") / "store"
    asyncio.run(_populate(root))
    return root


@pytest.fixture
def copy_root(store_root: Path, tmp_path: Path) -> Path:
    """A private copy of the populated root, for commands that write."""
    root = tmp_path / "copy"
    shutil.copytree(store_root, root, ignore=shutil.ignore_patterns(".lock"))
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every data file's bytes (the empty writer lock file is not data)."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


# -- reading ----------------------------------------------------------------


def test_sessions_table_and_json(store_root: Path) -> None:
    lines = ok(store_root, "sessions").splitlines()
    assert lines[0].split() == ["SESSION", "BRANCHES", "EVENTS", "LAST", "ACTIVITY"]
    assert [line.split()[:3] for line in lines[1:]] == [["demo", "3", "11"], ["other", "1", "2"]]
    rows = json_lines(ok(store_root, "--json", "sessions"))
    assert [(r["session_id"], r["branches"], r["events"]) for r in rows] == [
        ("demo", 3, 11),
        ("other", 1, 2),
    ]
    assert all(r["last_activity"].endswith("Z") for r in rows)


def test_root_from_the_environment(store_root: Path) -> None:
    env = {**os.environ, "EVENTSTORE_ROOT": str(store_root)}
    done = run(None, "sessions", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert [row["session_id"] for row in json_lines(done.stdout.decode())] == ["demo", "other"]


def test_branches_tree(store_root: Path) -> None:
    lines = ok(store_root, "branches", "demo").splitlines()
    assert lines[0].split() == ["BRANCH", "FORKED", "FROM", "HEAD", "OWN", "STATE"]
    assert lines[1].split() == ["main", "-", "7", "7", "open"]
    assert lines[2].split() == ["├──", "alt", "main@3", "5", "2", "open"]
    assert lines[3].split() == ["└──", "side", "main@5", "7", "2", "merged", "into", "main"]
    infos = {
        row["branch_id"]: row for row in json_lines(ok(store_root, "branches", "demo", "--json"))
    }
    assert infos["side"]["merged_into"] == "main"
    assert (infos["alt"]["parent_branch"], infos["alt"]["fork_sequence"]) == ("main", 3)


def test_show_for_people(store_root: Path) -> None:
    lines = ok(store_root, "show", "demo", "--branch", "alt").splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4", "5"]
    assert all("[main]" in line for line in lines[:3])
    assert not any("[" in line for line in lines[3:])
    assert lines[1].split()[3] == "tool_call"
    assert lines[1].endswith('{"name":"ls","arguments":{"path":"/tmp"}}')
    main = ok(store_root, "show", "demo").splitlines()
    assert "(merged from side#6)" in main[5]
    assert main[5].endswith("side note")


def test_show_json_is_the_stored_records(store_root: Path) -> None:
    # The same records as stored, each as plain JSON. Not the file's bytes: the
    # store marks all lines of a batch (here the merge) but its last with a
    # "batch_end" field for crash recovery, which records do not carry.
    stored = (store_root / "demo" / "main.jsonl").read_bytes()
    shown = run(store_root, "show", "demo", "--json").stdout
    assert decode_records(shown) == decode_records(stored)
    assert b"batch_end" in stored and b"batch_end" not in shown
    out = ok(
        store_root, "show", "demo", "--from", "2", "--to", "4", "--kind", "tool_call", "--json"
    )
    assert [(r["sequence"], r["kind"]) for r in json_lines(out)] == [(2, "tool_call")]
    out = ok(store_root, "show", "--kind", "message", "-k", "note", "demo", "--json")
    assert [r["sequence"] for r in json_lines(out)] == [1, 4, 6, 7]
    out = ok(store_root, "show", "demo", "-k", "note,tool_call", "--json")
    assert [r["sequence"] for r in json_lines(out)] == [2, 5, 6, 7]


def test_tail_prints_the_last_events(store_root: Path) -> None:
    out = ok(store_root, "tail", "demo", "--branch", "alt", "-n", "2", "--json")
    assert [(r["branch_id"], r["sequence"]) for r in json_lines(out)] == [("alt", 4), ("alt", 5)]
    assert len(ok(store_root, "tail", "demo").splitlines()) == 7


def test_diff_shows_the_divergence(store_root: Path) -> None:
    text = ok(store_root, "diff", "demo", "main", "alt")
    assert "alt forked from main at 3" in text
    assert "shared: sequences 1..3" in text
    assert "main since 3: 4 events (head 7)" in text
    assert "alt since 3: 2 events (head 5)" in text
    found = json.loads(ok(store_root, "diff", "demo", "alt", "main", "--json"))
    assert found["common_sequence"] == 3
    assert [r["sequence"] for r in found["only_a"]] == [4, 5]
    assert [r["branch_id"] for r in found["only_b"]] == ["main", "main", "main", "main"]


def test_stats(store_root: Path) -> None:
    found = json.loads(ok(store_root, "stats", "--json"))
    on_disk = sum(
        path.stat().st_size
        for path in store_root.rglob("*")
        if path.is_file() and path.parent != store_root
    )
    assert (found["sessions"], found["branches"], found["events"]) == (2, 4, 13)
    assert found["bytes"] == on_disk
    assert [s["session_id"] for s in found["largest"]] == ["demo", "other"]
    text = ok(store_root, "stats")
    assert "events    13" in text
    assert text.splitlines()[-2].split()[:2] == ["demo", "11"]


def test_verify_ok(store_root: Path) -> None:
    before = snapshot(store_root)
    assert ok(store_root, "verify").splitlines() == [
        "OK: 2 sessions, 4 branches, 13 events checked"
    ]
    assert json.loads(ok(store_root, "verify", "other", "--json"))["ok"] is True
    assert snapshot(store_root) == before


# -- writing ------------------------------------------------------------------


def test_fork_and_merge(copy_root: Path) -> None:
    info = json.loads(ok(copy_root, "fork", "demo", "try2", "--from", "alt", "--at", "4", "--json"))
    assert (info["parent_branch"], info["fork_sequence"], info["head"]) == ("alt", 4, 4)
    assert "created demo/early from main at sequence 0" in ok(
        copy_root, "fork", "demo", "early", "--at", "0"
    )
    text = ok(copy_root, "merge", "demo", "alt", "main")
    assert text.startswith("merged 2 events of demo/alt into main (head 9)")
    main = json_lines(ok(copy_root, "show", "demo", "--from", "8", "--json"))
    assert [r["metadata"]["merged_from"]["sequence"] for r in main] == [4, 5]
    done = run(copy_root, "merge", "demo", "alt", "main")
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1
    assert "closed" in done.stderr.decode()


def test_export_import_round_trip(store_root: Path, tmp_path: Path) -> None:
    exported = run(store_root, "export", "demo", "--branch", "alt").stdout
    assert [r["branch_id"] for r in json_lines(exported.decode())] == ["main"] * 3 + ["alt"] * 2
    source = tmp_path / "alt.jsonl"
    source.write_bytes(exported)
    target = tmp_path / "new-root"
    assert "imported 5 events into demo" in ok(target, "import", str(source))
    assert run(target, "export", "demo", "--branch", "alt").stdout == exported
    # Importing again finds every record already there and writes nothing.
    before = snapshot(target)
    again = json.loads(ok(target, "import", str(source), "--json"))
    assert (again["imported"], again["already_present"]) == (0, 5)
    assert snapshot(target) == before
    assert ok(target, "verify").startswith("OK: 1 session, 2 branches, 5 events")


def test_import_under_a_new_session_from_stdin(store_root: Path, tmp_path: Path) -> None:
    exported = run(store_root, "export", "demo").stdout
    target = tmp_path / "root"
    ok(target, "import", "-", "--session", "copy", stdin=exported)
    copied = run(target, "export", "copy").stdout
    original = json_lines(exported.decode())
    assert json_lines(copied.decode()) == [{**r, "session_id": "copy"} for r in original]


def test_export_all_round_trips_every_branch(store_root: Path, tmp_path: Path) -> None:
    source = tmp_path / "all.jsonl"
    source.write_bytes(run(store_root, "export", "demo", "--all").stdout)
    target = tmp_path / "root"
    ok(target, "import", str(source))
    for branch in ("main", "alt", "side"):
        assert (
            run(target, "export", "demo", "-b", branch).stdout
            == run(store_root, "export", "demo", "-b", branch).stdout
        )


WRITER = """
import asyncio, sys
from eventstore import EventRecord
from eventstore.file import FileEventStore

async def main():
    async with FileEventStore(sys.argv[1]) as store:
        for seq in (3, 4, 5):
            await store.append(EventRecord.new("other", "main", seq, "live", seq))

asyncio.run(main())
"""


def test_tail_follows_a_writer_in_another_process(copy_root: Path) -> None:
    command = [sys.executable, "-m", "journal", "--root", str(copy_root)]
    with subprocess.Popen(
        [*command, "tail", "other", "-n", "1", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    ) as tail:
        lines, pump = _line_reader(tail.stdout)
        try:
            # The last stored event is printed before the writer starts.
            assert lines.get(timeout=TIMEOUT).split()[0] == b"2"
            subprocess.run([sys.executable, "-c", WRITER, str(copy_root)], check=True, env=_env())
            followed = [lines.get(timeout=TIMEOUT).split() for _ in range(3)]
            assert [(row[0], row[3], row[4]) for row in followed] == [
                (b"3", b"live", b"3"),
                (b"4", b"live", b"4"),
                (b"5", b"live", b"5"),
            ]
            tail.send_signal(signal.SIGINT)
            assert tail.wait(timeout=TIMEOUT) in (0, 130)
        finally:
            if tail.poll() is None:
                tail.kill()
            pump.join(TIMEOUT)
        assert tail.stderr is not None
        assert b"Traceback" not in tail.stderr.read()


def test_tail_follow_ends_when_its_reader_goes_away(store_root: Path) -> None:
    # ``eventstore tail -f | head -1``: an idle follower must notice the closed pipe.
    with subprocess.Popen(
        [sys.executable, "-m", "journal", "--root", str(store_root), "tail", "other", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    ) as tail:
        assert tail.stdout is not None
        assert tail.stdout.readline().split()[0] == b"1"
        tail.stdout.close()
        assert tail.wait(timeout=TIMEOUT) == 0
        assert tail.stderr is not None
        assert tail.stderr.read() == b""


def _line_reader(stream: IO[bytes] | None) -> tuple[queue.Queue[bytes], threading.Thread]:
    """Lines of a child's stdout on a queue, so waiting on them can time out."""
    lines: queue.Queue[bytes] = queue.Queue()
    assert stream is not None

    def pump() -> None:
        for line in stream:
            lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


# -- verify finds damage and repairs nothing ----------------------------------


def test_verify_reports_a_torn_tail_without_repairing_it(copy_root: Path) -> None:
    log = copy_root / "other" / "main.jsonl"
    with log.open("ab") as stream:
        stream.write(b'{"session_id":"other","branch_id":"main","seq')
    before = snapshot(copy_root)
    done = run(copy_root, "verify")
    assert done.returncode == 1
    out = done.stdout.decode().splitlines()
    assert out[0].startswith(f"{log}:3: torn last line")
    assert out[-1].startswith("FAILED: 1 problem in 2 sessions")
    assert snapshot(copy_root) == before
    # The demo session alone is fine.
    assert run(copy_root, "verify", "demo").returncode == 0


def test_verify_names_corrupt_lines_and_gaps(copy_root: Path) -> None:
    log = copy_root / "demo" / "main.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    record = msgspec.json.decode(lines[3])
    record["sequence"] = 9
    lines[3] = msgspec.json.encode(record) + b"\n"
    lines[1] = b"not json\n"
    log.write_bytes(b"".join(lines))
    found = json.loads(run(copy_root, "verify", "demo", "--json").stdout)
    assert found["ok"] is False
    problems = [(p["path"], p["line"]) for p in found["problems"]]
    assert (str(log), 2) in problems
    assert (str(log), 4) in problems
    assert any("sequence 9, expected 4" in p["message"] for p in found["problems"])


# -- user mistakes: one line, exit 2 ------------------------------------------


@pytest.fixture
def bad_import(tmp_path: Path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"session_id":"s","branch_id":"main","sequence":1,"kind":"k"}\n[1,2]\n')
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["show", "nope"], "unknown session 'nope'"),
        (["branches", "nope"], "unknown session 'nope'"),
        (["tail", "nope", "-f"], "unknown session 'nope'"),
        (["export", "nope"], "unknown session 'nope'"),
        (["verify", "nope"], "unknown session 'nope'"),
        (["diff", "demo", "main", "ghost"], "branch 'ghost' not found"),
        (["show", "demo", "--branch", "ghost"], "branch 'ghost' not found"),
        (["show", "bad id"], "invalid session_id 'bad id'"),
        (["show", "demo", "--branch", "../x"], "invalid branch_id '../x'"),
        (["show", "demo", "--from", "x"], "expected an integer"),
        (["fork", "demo", "main"], "already exists"),
        (["fork", "demo", "b2", "--at", "99"], "beyond the head 7"),
        (["frobnicate"], "invalid choice"),
        (["import", "missing.jsonl"], "missing.jsonl"),
        (["tail", "demo", "-f", "--interval", "0"], "--interval"),
        ([], "required: COMMAND"),
    ],
)
def test_user_mistakes(copy_root: Path, args: list[str], expected: str) -> None:
    done = run(copy_root, *args)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.startswith("eventstore: error: ")
    assert err.count("\n") == 1
    assert expected in err
    assert done.stdout == b""


def test_main_returns_the_exit_code_in_process(
    store_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from journal.cli import main

    assert main(["--root", str(store_root), "show", "nope"]) == 2
    assert capsys.readouterr().err == (
        "eventstore: error: unknown session 'nope' (see `eventstore sessions`)\n"
    )
    assert main(["--root", str(store_root), "show", "--from", "0", "demo"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["--help"]) == 0
    assert "Exit codes" in capsys.readouterr().out


def test_missing_and_absent_root(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EVENTSTORE_ROOT"}
    for done, expected in [
        (run(tmp_path / "absent", "sessions"), "does not exist"),
        (run(None, "sessions", env=env), "EVENTSTORE_ROOT"),
    ]:
        assert done.returncode == 2
        assert done.stderr.decode().count("\n") == 1
        assert expected in done.stderr.decode()


def test_bad_import_file_writes_nothing(copy_root: Path, bad_import: Path) -> None:
    before = snapshot(copy_root)
    done = run(copy_root, "import", str(bad_import))
    assert done.returncode == 2
    assert done.stderr.decode().startswith(
        f"eventstore: error: {bad_import}:2: not an event record"
    )
    assert done.stderr.decode().count("\n") == 1
    assert snapshot(copy_root) == before


def test_import_refuses_what_contradicts_the_store(copy_root: Path, tmp_path: Path) -> None:
    lines = run(copy_root, "export", "demo", "-b", "alt").stdout.splitlines(keepends=True)
    changed = msgspec.json.decode(lines[1])
    changed["event_id"] = "01ANOTHEREVENT000000000000"
    cases = {
        # Same place, another event: the stored history wins, the line is named.
        "conflict.jsonl": (
            [lines[0], msgspec.json.encode(changed) + b"\n"],
            ":2: demo/main#2 is already stored as another event",
        ),
        # A new session first: it is not written either, the file is checked first.
        "late.jsonl": (
            [line.replace(b'"demo"', b'"new"') for line in lines]
            + [lines[0], msgspec.json.encode(changed) + b"\n"],
            ":7: demo/main#2 is already stored as another event",
        ),
        # A fork's own events without the history before them.
        "orphan.jsonl": (
            [line.replace(b'"demo"', b'"fresh"') for line in lines[3:]],
            ":1: cannot tell where fresh/alt was forked from",
        ),
    }
    side = run(copy_root, "export", "demo", "-b", "side").stdout.splitlines(keepends=True)
    extra = {**msgspec.json.decode(side[-1]), "sequence": 8, "event_id": "01EXTRA"}
    # Appending to a merged branch.
    cases["closed.jsonl"] = (
        [*side, msgspec.json.encode(extra) + b"\n"],
        ":8: demo/side is closed (merged into 'main')",
    )
    before = snapshot(copy_root)
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(b"".join(content))
        done = run(copy_root, "import", str(path))
        assert done.returncode == 2
        assert done.stderr.decode().count("\n") == 1
        assert f"{path}{expected}" in done.stderr.decode()
    assert snapshot(copy_root) == before


def test_writes_while_another_process_holds_the_store(copy_root: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from eventstore.file import FileEventStore\n"
            "async def main():\n"
            "    async with FileEventStore(sys.argv[1]):\n"
            "        print('ready', flush=True)\n"
            "        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)\n"
            "asyncio.run(main())\n",
            str(copy_root),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"ready\n"
        done = run(copy_root, "fork", "demo", "b2")
        assert done.returncode == 2
        assert done.stderr.decode().count("\n") == 1
        assert "locked" in done.stderr.decode()
        # Reading still works beside the writer.
        assert ok(copy_root, "sessions", "--json").count("\n") == 2
    finally:
        holder.communicate(b"", timeout=TIMEOUT)
