"""A consumer process for the cross-process tests (tests/journal/test_consumer_processes.py).

``python -m tests.journal._consumer_worker KIND TARGET OUT LEASE [--idle]``: KIND is
``file`` (TARGET a root, opened ``read_only``) or ``postgres`` (TARGET
``DSN#schema``). The consumer ``idx`` appends one line per handled record to
OUT, ``pid start end position``, with one ``write`` (so a SIGKILL never tears
it); records whose data is ``{"text": "poison"}`` always fail. It runs until
killed, or with ``--idle`` until caught up.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from eventstore import EventRecord, EventStore, FileEventStore
from journal import EventJournal


def open_store(kind: str, target: str) -> EventStore:
    if kind == "file":
        return FileEventStore(target, read_only=True)
    from eventstore.postgres import PostgresEventStore

    dsn, _, schema = target.partition("#")
    return PostgresEventStore(dsn, schema=schema, min_size=1, max_size=2)


async def main(kind: str, target: str, out: str, lease: float, idle: bool) -> None:
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()

    async def handler(event: EventRecord) -> None:
        start = time.time()
        if event.data == {"text": "poison"}:
            raise ValueError("poison")
        await asyncio.sleep(0.0005)
        os.write(fd, f"{pid} {start:.6f} {time.time():.6f} {event.position}\n".encode())

    async with EventJournal(open_store(kind, target)) as journal:
        consumer = journal.consumer(
            "idx", handler, max_attempts=2, backoff=0.001, lease_seconds=lease
        )
        if idle:
            await consumer.run_until_idle()
            return
        async with consumer:
            await asyncio.Event().wait()


if __name__ == "__main__":
    kind, target, out, lease = sys.argv[1:5]
    asyncio.run(main(kind, target, out, float(lease), "--idle" in sys.argv))
