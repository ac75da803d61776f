"""pytest plugin (``pytest11`` entry point ``eventjournal``): fixtures for users' tests.

Installed with the distribution, so pytest loads it in every project that has
eventjournal installed: importing it must stay cheap and must never fail. The
backends beyond memory and the journal are imported inside their fixtures.

Fixtures (function scope, each opened before the test and closed after it):

``event_store``
    a :class:`~eventstore.MemoryEventStore`.
``file_event_store``
    a :class:`~eventstore.file.FileEventStore` in the test's ``tmp_path``.
``event_journal``
    a :class:`journal.EventJournal` over a memory store.

They are async fixtures run by pytest-asyncio, in ``strict`` and ``auto`` mode
alike (under ``strict``, mark the tests ``@pytest.mark.asyncio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..memory import MemoryEventStore

if TYPE_CHECKING:
    from journal import EventJournal

    from ..file import FileEventStore

__all__ = ("event_journal", "event_store", "file_event_store")

_fixture: Callable[..., Any]
try:
    from pytest_asyncio import fixture as _fixture
except ImportError:  # pragma: no cover - the fixtures then say what is missing
    _async = False
    _fixture = pytest.fixture
else:
    _async = True


def _need_asyncio(name: str) -> None:
    if not _async:
        pytest.fail(f"the {name} fixture needs pytest-asyncio: pip install 'eventjournal[test]'")


@_fixture
async def event_store() -> AsyncIterator[MemoryEventStore]:
    """An open :class:`~eventstore.MemoryEventStore`, closed after the test."""
    _need_asyncio("event_store")
    async with MemoryEventStore() as store:
        yield store


@_fixture
async def file_event_store(tmp_path: Path) -> AsyncIterator[FileEventStore]:
    """An open :class:`~eventstore.file.FileEventStore` under ``tmp_path``, closed after."""
    _need_asyncio("file_event_store")
    from ..file import FileEventStore

    async with FileEventStore(tmp_path / "eventstore") as store:
        yield store


@_fixture
async def event_journal() -> AsyncIterator[EventJournal]:
    """An open :class:`journal.EventJournal` over a memory store, closed after the test."""
    _need_asyncio("event_journal")
    from journal import EventJournal

    async with EventJournal(MemoryEventStore()) as opened:
        yield opened
