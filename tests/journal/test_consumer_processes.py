"""Durable consumers across processes (issue 15), on the file store and PostgreSQL.

A consumer process (:mod:`tests.journal._consumer_worker`) is SIGKILLed again
and again while this process writes; afterwards every record was handled
(nothing lost), each restart redelivered only the tail the killed one had not
checkpointed, poison records sit in the dead letters, and two processes with
the same name never ran the handler at the same time.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import EventStore, FileEventStore
from journal import EventJournal
from journal._consumer import CHECKPOINT_EVERY
from tests.conftest import PG_DSN, _postgres_factory

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20


class Backend:
    def __init__(self, kind: str, target: str, store: EventStore) -> None:
        self.kind, self.target, self.store = kind, target, store

    def spawn(
        self, out: Path, *, idle: bool = False, lease: float = 1.0
    ) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "tests.journal._consumer_worker", self.kind, self.target]
        args += [str(out), str(lease), *(["--idle"] if idle else [])]
        return subprocess.Popen(args, cwd=ROOT, env=env)


@pytest.fixture(params=["file", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "file":
        root = tmp_path / "store"
        async with FileEventStore(root) as store:
            yield Backend("file", str(root), store)
        return
    async for factory in _postgres_factory(request):
        async with factory() as store:
            yield Backend("postgres", f"{PG_DSN}#{store.schema}", store)  # type: ignore[attr-defined]


def lines(out: Path) -> list[tuple[int, float, float, int]]:
    if not out.exists():
        return []
    found = []
    for line in out.read_text().splitlines():
        pid, start, end, position = line.split()
        found.append((int(pid), float(start), float(end), int(position)))
    return found


async def write(journal: EventJournal, n: int, start: int = 0) -> None:
    for i in range(start, start + n, 10):
        items = [
            ("message", {"text": "poison" if (i + k) % 97 == 50 else f"m{i + k}"})
            for k in range(10)
        ]
        await journal.record_batch(f"s{i % 3}", items)


async def wait_for_lines(out: Path, more_than: int, deadline: float = 20) -> None:
    until = time.monotonic() + deadline
    while len(lines(out)) <= more_than:
        assert time.monotonic() < until, "the consumer process handled nothing"
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_sigkill_loses_nothing_and_redelivers_only_the_tail(
    backend: Backend, tmp_path: Path
) -> None:
    journal = EventJournal(backend.store)
    out = tmp_path / "handled.txt"
    await write(journal, 1500)
    runs: list[int] = []
    for kill in range(KILLS):
        await write(journal, 50, 1500 + 50 * kill)
        before = len(lines(out))
        worker = backend.spawn(out)
        await wait_for_lines(out, before)
        # Past the first checkpoint (CHECKPOINT_INTERVAL), then at varied moments.
        await asyncio.sleep(0.25 + 0.05 * (kill % 4))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        runs.append(worker.pid)
    final = backend.spawn(out, idle=True)
    assert await asyncio.to_thread(final.wait, 60) == 0
    runs.append(final.pid)

    feed = await backend.store.read_feed(0)
    poison = {r.position for r in feed if r.data == {"text": "poison"}}
    handled = lines(out)
    by_run: dict[int, list[int]] = {}
    for pid, _, _, position in handled:
        by_run.setdefault(pid, []).append(position)
    # Nothing lost: every record handled, or dead-lettered.
    assert {p for *_, p in handled} | poison == {r.position for r in feed}
    # Each run handles in position order and starts over only the tail of what
    # the runs before it handled (those past the last checkpoint: bounded).
    done: set[int] = set()
    for pid in runs:
        positions = by_run.get(pid, [])
        assert positions == sorted(positions)
        if positions:
            again = {p for p in done if p >= positions[0]}
            assert again <= set(positions)
            assert len(again) <= CHECKPOINT_EVERY
        done.update(positions)
    redelivered = len(handled) - len({p for *_, p in handled})
    print(f"{backend.kind}: {len(handled)} handled, {redelivered} redelivered over {KILLS} kills")
    # Dead letters survived every restart.
    state = await backend.store.consumer_state("idx")
    assert {d.position for d in await state.dead_letters()} == poison
    assert await state.position() == feed[-1].position


@pytest.mark.slow
async def test_two_processes_never_run_the_handler_at_once(
    backend: Backend, tmp_path: Path
) -> None:
    journal = EventJournal(backend.store)
    out = tmp_path / "handled.txt"
    await write(journal, 300)
    workers = [backend.spawn(out, lease=3), backend.spawn(out, lease=3)]
    try:
        for round_ in range(6):
            await write(journal, 100, 300 + 100 * round_)
            await wait_for_lines(out, 0)
            await asyncio.sleep(0.3)
            if round_ in (1, 3):
                # The holder dies: the other takes over once its lease lapses.
                until = time.monotonic() + 20
                while lines(out)[-1][0] not in {w.pid for w in workers}:
                    assert time.monotonic() < until, "nobody took the lease over"
                    await asyncio.sleep(0.05)
                (victim,) = [w for w in workers if w.pid == lines(out)[-1][0]]
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                workers.remove(victim)
                workers.append(backend.spawn(out, lease=3))
        feed_head = await backend.store.feed_head()
        state = await backend.store.consumer_state("idx")
        until = time.monotonic() + 30
        while await state.position() < feed_head:
            assert time.monotonic() < until, "the consumers did not catch up"
            await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    calls = sorted(lines(out), key=lambda line: line[1])
    assert len({pid for pid, *_ in calls}) >= 2
    for (pid_a, _, end_a, _), (pid_b, start_b, _, _) in itertools.pairwise(calls):
        if pid_a != pid_b:
            assert start_b >= end_a, "two processes ran the handler at once"
