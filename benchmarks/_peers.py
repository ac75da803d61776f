"""The peer: the ``eventsourcing`` library's recorders, used the way its docs say.

Configuration, so the comparison can be checked:

* SQLite: ``SQLiteDatastore`` on a *file* database with the library's defaults.
  It switches the file to ``journal_mode=WAL`` and leaves ``synchronous`` at
  SQLite's default (FULL, 2): each committed transaction fsyncs the WAL. The
  peer of ``durability="write"`` is the same datastore with
  ``synchronous=NORMAL`` (1) set on each of its connections: in WAL mode a
  commit then writes the WAL without syncing it (synced at checkpoints), so a
  crash of the process loses nothing and a crash of the machine may lose the
  last commits, like ``durability="write"``. The values actually in force are
  read back and stored in the JSON output.
* POPO: ``POPOAggregateRecorder``, the in-memory recorder.
* PostgreSQL: ``PostgresDatastore`` + ``PostgresAggregateRecorder`` in a
  scratch schema, dropped afterwards.

Recorders store ``StoredEvent(originator_id, originator_version, topic, state)``;
``state`` is the same payload as our events, JSON-encoded beforehand (our
records are also built beforehand). A replay decodes every ``state`` back to a
dict, as our replay decodes every line. The peer is measured at the recorder
level, without its domain-event mapper, which only makes it faster.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec

from ._harness import PAYLOAD, Unavailable

__all__ = (
    "SqlitePeer",
    "popo_recorder",
    "postgres_peer",
    "stored_events",
)

_STATE = msgspec.json.encode(PAYLOAD)
_decode_state = msgspec.json.Decoder().decode


def _persistence() -> Any:
    try:
        import eventsourcing.persistence as persistence
    except ImportError as exc:
        raise Unavailable(f"eventsourcing not installed ({exc})") from None
    return persistence


def stored_events(originator_id: str, count: int, *, start: int = 1) -> list[Any]:
    """``count`` StoredEvents carrying the benchmark payload, built up front."""
    stored_event = _persistence().StoredEvent
    return [
        stored_event(originator_id, version, "message", _STATE)
        for version in range(start, start + count)
    ]


def decode_all(events: Any) -> int:
    """Decode each event's state as a reader would; returns how many."""
    for event in events:
        _decode_state(event.state)
    return len(events)


class SqlitePeer:
    """An eventsourcing SQLite aggregate recorder over one database file."""

    def __init__(self, path: Path, *, synchronous: str | None = None) -> None:
        _persistence()
        from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteDatastore

        self.path = path
        self.datastore = SQLiteDatastore(str(path), originator_id_type="text")
        if synchronous is not None:
            _set_synchronous(self.datastore, synchronous)
        self.recorder = SQLiteAggregateRecorder(self.datastore)
        self.recorder.create_table()

    @classmethod
    def fresh(cls, path: Path, *, synchronous: str | None = None) -> SqlitePeer:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{path}{suffix}")
        return cls(path, synchronous=synchronous)

    def pragmas(self) -> dict[str, Any]:
        with self.datastore.transaction(commit=False) as cursor:
            out = {}
            for name in ("journal_mode", "synchronous"):
                cursor.execute(f"PRAGMA {name}")
                out[name] = cursor.fetchone()[0]
            return out

    def insert(self, events: list[Any]) -> None:
        self.recorder.insert_events(events)

    def select(self, originator_id: str, **kwargs: Any) -> Any:
        return self.recorder.select_events(originator_id, **kwargs)

    def head(self, originator_id: str) -> int:
        last = self.recorder.select_events(originator_id, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def close(self) -> None:
        self.datastore.close()


def _set_synchronous(datastore: Any, level: str) -> None:
    """Run ``PRAGMA synchronous=<level>`` on every connection the datastore's pool makes.

    eventsourcing has no setting for it; its pool makes each connection in
    ``_create_connection``, so this wraps that (``pragmas()`` reads it back).
    """
    if level.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"not a synchronous level: {level!r}")
    pool = datastore.pool
    create = pool._create_connection

    def create_with_level() -> Any:
        conn = create()
        conn._sqlite_conn.execute(f"PRAGMA synchronous={level}")
        return conn

    pool._create_connection = create_with_level


def popo_recorder() -> Any:
    _persistence()
    from eventsourcing.popo import POPOAggregateRecorder

    return POPOAggregateRecorder()


@contextlib.contextmanager
def postgres_peer(dsn: str, schema: str) -> Iterator[Any]:
    """An eventsourcing PostgreSQL recorder in a scratch ``schema``, dropped on exit."""
    _persistence()
    try:
        import psycopg
        from eventsourcing.postgres import PostgresAggregateRecorder, PostgresDatastore
    except ImportError as exc:
        raise Unavailable(f"eventsourcing's postgres module needs {exc.name}") from None
    url = urlparse(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    datastore = PostgresDatastore(
        url.path.lstrip("/") or "postgres",
        url.hostname or "127.0.0.1",
        url.port or 5432,
        url.username or "postgres",
        url.password or "",
        schema=schema,
        originator_id_type="text",
    )
    try:
        recorder = PostgresAggregateRecorder(datastore)
        recorder.create_table()
        yield recorder
    finally:
        datastore.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
