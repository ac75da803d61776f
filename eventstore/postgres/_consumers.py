"""Consumer state in PostgreSQL: the ``consumers`` and ``dead_letters`` tables (schema v4).

``consumers(name, position, holder, lease_expires_at, updated_at)``: one row per
consumer. The lease is that row's ``holder``: one statement takes it when it is
free, lapsed (``lease_expires_at < now()``, the database's clock, so machines
need not agree on the time) or already the caller's, and renews it; a holder
that dies loses it ``lease_seconds`` after its last renewal.
``dead_letters`` is keyed by ``(consumer, position)``: storing one again replaces it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .._consumers import ConsumerInfo, ConsumerState, DeadLetter

__all__ = ("ConsumerStatements", "PostgresConsumerState")

_LETTER_COLUMNS = (
    "consumer, position, session_id, branch_id, sequence, event_id, attempts, "
    "error_type, error_message, first_failed_at, last_failed_at"
)


class ConsumerStatements:
    """The SQL of the consumer tables, rendered for one schema."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        self.position = f"SELECT position FROM {s}.consumers WHERE name = $1"
        self.save = (
            f"INSERT INTO {s}.consumers (name, position) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET position = $2, updated_at = now()"
        )
        self.add_letter = (
            f"INSERT INTO {s}.dead_letters ({_LETTER_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (consumer, position) DO UPDATE SET session_id = $3, branch_id = $4, "
            "sequence = $5, event_id = $6, attempts = $7, error_type = $8, "
            "error_message = $9, first_failed_at = $10, last_failed_at = $11"
        )
        self.letters = (
            f"SELECT {_LETTER_COLUMNS} FROM {s}.dead_letters WHERE consumer = $1 ORDER BY position"
        )
        self.remove_letters = (
            f"DELETE FROM {s}.dead_letters WHERE consumer = $1 AND position = ANY($2::bigint[])"
        )
        self.acquire = (
            f"INSERT INTO {s}.consumers AS c (name, holder, lease_expires_at) "
            "VALUES ($1, $2, now() + make_interval(secs => $3)) "
            "ON CONFLICT (name) DO UPDATE SET holder = $2, "
            "lease_expires_at = now() + make_interval(secs => $3) "
            "WHERE c.holder IS NULL OR c.holder = $2 OR c.lease_expires_at < now() "
            "RETURNING holder"
        )
        self.release = (
            f"UPDATE {s}.consumers SET holder = NULL, lease_expires_at = NULL "
            "WHERE name = $1 AND holder = $2"
        )
        info = (
            "SELECT c.name, c.position, "
            f"(SELECT count(*) FROM {s}.dead_letters d WHERE d.consumer = c.name) AS letters, "
            "CASE WHEN c.lease_expires_at >= now() THEN c.holder END AS holder, "
            "CASE WHEN c.lease_expires_at >= now() THEN c.lease_expires_at END AS expires "
            f"FROM {s}.consumers c"
        )
        self.info = f"{info} WHERE c.name = $1"
        self.infos = f"{info} ORDER BY c.name"


def info_of(row: Any) -> ConsumerInfo:
    """A :class:`ConsumerInfo` from a row of ``info``/``infos``."""
    return ConsumerInfo(row["name"], row["position"], row["letters"], row["holder"], row["expires"])


class PostgresConsumerState(ConsumerState):
    """One consumer's rows; every call is one statement on a pooled connection.

    :param pool: the store's connection pool.
    :param errors: the store's context manager translating driver errors.
    """

    def __init__(
        self,
        name: str,
        sql: ConsumerStatements,
        pool: Any,
        errors: Callable[[], AbstractContextManager[None]],
    ) -> None:
        super().__init__(name)
        self._sql = sql
        self._pool = pool
        self._errors = errors

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        with self._errors():
            rows: list[Any] = await self._pool.fetch(sql, *args)
            return rows

    async def position(self) -> int:
        rows = await self._fetch(self._sql.position, self.name)
        return int(rows[0]["position"]) if rows else 0

    async def save_position(self, position: int) -> None:
        await self._fetch(self._sql.save, self.name, position)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._fetch(
            self._sql.add_letter,
            self.name,
            letter.position,
            letter.session_id,
            letter.branch_id,
            letter.sequence,
            letter.event_id,
            letter.attempts,
            letter.error_type,
            letter.error_message,
            letter.first_failed_at,
            letter.last_failed_at,
        )

    async def dead_letters(self) -> list[DeadLetter]:
        rows = await self._fetch(self._sql.letters, self.name)
        return [DeadLetter(**dict(row)) for row in rows]

    async def remove_dead_letters(self, positions: set[int]) -> None:
        if positions:
            await self._fetch(self._sql.remove_letters, self.name, sorted(positions))

    async def acquire(self, holder: str, lease_seconds: float) -> bool:
        rows = await self._fetch(self._sql.acquire, self.name, holder, float(lease_seconds))
        return bool(rows)

    async def release(self, holder: str) -> None:
        await self._fetch(self._sql.release, self.name, holder)

    async def info(self) -> ConsumerInfo:
        rows = await self._fetch(self._sql.info, self.name)
        return info_of(rows[0]) if rows else ConsumerInfo(self.name, 0, 0)
