"""A durable consumer: index an agent's messages in another process, through a kill.

The agent (this process) records a conversation in the embedded file store. A
consumer named ``indexer`` runs in a second process over a ``read_only=True``
store and appends each message to a search index (a JSONL file), deduplicating
by ``event_id`` since delivery is at least once. Halfway through we SIGKILL
it; while it is dead the agent goes on writing; the restarted consumer
resumes from its durable checkpoint and misses nothing. One message is poison
(its text is not a string): it fails every attempt, becomes a dead letter, and
the consumer moves on.

Run: ``python examples/consumer.py [ROOT]`` (a temporary directory by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eventstore import EventRecord
from journal import EventJournal, open_journal

SESSION = "support-chat"
MESSAGES = [
    "My order #1042 has not arrived.",
    "Let me look that up for you.",
    "It was shipped on Monday.",
    "The tracking says it is in Lisbon.",
    42,  # poison: the indexer cannot tokenize a number
    "Can you send it to my office instead?",
    "Done: new address saved.",
    "Thanks, that was fast!",
]


def index_path(root: Path) -> Path:
    return root / "index.jsonl"


async def consume(root: Path) -> None:
    """The consumer process: index messages until SIGTERM."""
    index = index_path(root)
    lines = index.read_text().splitlines() if index.exists() else []
    seen = {json.loads(line)["event_id"] for line in lines}

    async def indexer(event: EventRecord) -> None:
        text = event.data["text"]
        if not isinstance(text, str):
            raise TypeError(f"cannot index {type(text).__name__} {text!r}")
        if event.event_id in seen:
            return  # delivered again after a crash: already indexed
        with index.open("a") as out:
            out.write(json.dumps({"event_id": event.event_id, "words": text.lower().split()}))
            out.write("\n")
        seen.add(event.event_id)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with open_journal(root / "store", read_only=True) as journal:
        consumer = journal.consumer(
            "indexer", indexer, kinds=["message"], max_attempts=3, backoff=0.05
        )
        async with consumer:  # leaving it writes the checkpoint and frees the lease
            await stop.wait()


def start_consumer(root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--consume", str(root)])


def indexed(root: Path) -> int:
    index = index_path(root)
    return len(index.read_text().splitlines()) if index.exists() else 0


async def wait_until_indexed(root: Path, count: int) -> None:
    deadline = time.monotonic() + 20
    while indexed(root) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the consumer indexed {indexed(root)} of {count} messages")
        await asyncio.sleep(0.02)


async def say(journal: EventJournal, texts: list[object]) -> None:
    for text in texts:
        await journal.record(SESSION, "message", {"text": text})
        await journal.record(SESSION, "phase", {"name": "typing"})  # not for the indexer


async def agent(root: Path) -> None:
    async with open_journal(root / "store") as journal:
        await say(journal, MESSAGES[:3])
        worker = start_consumer(root)
        await wait_until_indexed(root, 3)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        print(f"consumer killed after indexing {indexed(root)} messages")

        await say(journal, MESSAGES[3:])
        print("the agent wrote 5 more while no consumer ran")
        worker = start_consumer(root)
        await wait_until_indexed(root, len(MESSAGES) - 1)
        worker.send_signal(signal.SIGTERM)
        worker.wait()

        # The same consumer, seen from the writer: its state lives in the store.
        consumer = journal.consumer("indexer", lambda event: asyncio.sleep(0))
        letters, lag = await consumer.dead_letters(), await consumer.lag()
        for letter in letters:
            print(
                f"dead letter: {letter.session_id}#{letter.sequence} after {letter.attempts} "
                f"attempts: {letter.error_type}: {letter.error_message}"
            )
        print(
            f"indexed {indexed(root)} messages once each, dead-lettered {len(letters)}; "
            f"checkpoint at {consumer.position}, lag {lag}"
        )


def main() -> None:
    if sys.argv[1:2] == ["--consume"]:
        asyncio.run(consume(Path(sys.argv[2])))
        return
    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
        os.makedirs(root, exist_ok=True)
        asyncio.run(agent(root))
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(agent(Path(tmp)))


if __name__ == "__main__":
    main()
