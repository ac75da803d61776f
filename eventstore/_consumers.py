"""Durable consumer state kept by the store: checkpoints, dead letters, leases.

The journal's consumers (``journal.consumer``) keep what must outlive their
process in the store they read: each backend hands out one
:class:`ConsumerState` per consumer name (``store.consumer_state(name)``).

* the *checkpoint*: the feed position up to which every record was handled
  (acknowledged or dead-lettered);
* the *dead letters*, keyed by feed position (storing one again replaces it);
* the *lease*: which holder runs the consumer, so that one instance runs per
  name across processes. ``acquire`` takes it when it is free, lapsed or
  already the caller's (renewing it); a holder that dies loses it at most
  ``lease_seconds`` later.

:class:`MemoryConsumerState` is the in-process implementation: the memory store's,
and the default of a backend that does not persist consumer state.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from datetime import datetime, timedelta

import msgspec

from ._records import utc_now

__all__ = ("ConsumerInfo", "ConsumerState", "DeadLetter", "MemoryConsumerState")


class DeadLetter(msgspec.Struct, frozen=True):
    """A feed record a consumer gave up on after ``attempts`` failed deliveries.

    It names the record (its ``position`` and ``session_id``/``branch_id``/
    ``sequence``/``event_id``) and the last error; the payload stays in the log.
    """

    consumer: str
    position: int
    session_id: str
    branch_id: str
    sequence: int
    event_id: str
    attempts: int
    error_type: str
    error_message: str
    first_failed_at: datetime
    last_failed_at: datetime


class ConsumerInfo(msgspec.Struct, frozen=True):
    """What ``store.consumers()`` lists about one consumer (``eventstore consumers``)."""

    name: str
    position: int
    dead_letters: int
    #: The lease holder's id while one holds it, else ``None``.
    holder: str | None = None
    #: When the lease lapses unless renewed (``None``: free, or held until its
    #: holder's process ends, as the file store's lock is).
    lease_expires_at: datetime | None = None


class ConsumerState(ABC):
    """One consumer's durable state in a store. Every method may raise
    :class:`~eventstore.StorageError` (disk or connection failure) and
    :class:`~eventstore.StoreClosed` (the store was closed)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def position(self) -> int:
        """The stored checkpoint (0 if none was ever saved)."""

    @abstractmethod
    async def save_position(self, position: int) -> None:
        """Store the checkpoint durably (replacing the last one)."""

    @abstractmethod
    async def add_dead_letter(self, letter: DeadLetter) -> None:
        """Store a dead letter durably, replacing one at the same position."""

    @abstractmethod
    async def dead_letters(self) -> list[DeadLetter]:
        """The dead letters, by position."""

    @abstractmethod
    async def remove_dead_letters(self, positions: set[int]) -> None:
        """Forget the dead letters at these positions (absent ones are fine)."""

    @abstractmethod
    async def acquire(self, holder: str, lease_seconds: float) -> bool:
        """Take or renew the lease for ``holder``; ``False`` if another holds it."""

    @abstractmethod
    async def release(self, holder: str) -> None:
        """Give the lease up if ``holder`` has it (else nothing)."""

    @abstractmethod
    async def info(self) -> ConsumerInfo:
        """Position, dead-letter count and lease holder, as stored."""


class MemoryConsumerState(ConsumerState):
    """Consumer state in this process's memory; the lease expires by the monotonic clock."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._position = 0
        self._letters: dict[int, DeadLetter] = {}
        self._holder: str | None = None
        self._expires = 0.0

    async def position(self) -> int:
        return self._position

    async def save_position(self, position: int) -> None:
        self._position = position

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        self._letters[letter.position] = letter

    async def dead_letters(self) -> list[DeadLetter]:
        return [self._letters[p] for p in sorted(self._letters)]

    async def remove_dead_letters(self, positions: set[int]) -> None:
        for position in positions:
            self._letters.pop(position, None)

    async def acquire(self, holder: str, lease_seconds: float) -> bool:
        now = time.monotonic()
        if self._holder not in (None, holder) and self._expires > now:
            return False
        self._holder, self._expires = holder, now + lease_seconds
        return True

    async def release(self, holder: str) -> None:
        if self._holder == holder:
            self._holder = None

    async def info(self) -> ConsumerInfo:
        left = self._expires - time.monotonic()
        held = self._holder is not None and left > 0
        return ConsumerInfo(
            self.name,
            self._position,
            len(self._letters),
            self._holder if held else None,
            utc_now() + timedelta(seconds=left) if held else None,
        )
