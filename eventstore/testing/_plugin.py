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
alike (under ``strict``, mark the tests ``@pytest.mark.asyncio``). Without
pytest-asyncio, a test marked ``@pytest.mark.anyio`` gets them from anyio's
plugin; with neither, requesting one fails with a message saying so.

A ``@given`` test runs its body once per example, so it must not take those
(Hypothesis's ``function_scoped_fixture`` health check refuses them). It takes
these instead (session scope, plain functions, no async runner needed):

``fresh_store``
    :func:`eventstore.testing.fresh_store`: ``async with fresh_store() as store``
    opens a new store for each example.
``fresh_journal``
    :func:`journal.testing.fresh_journal`, the same for a journal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..memory import MemoryEventStore
from ._fresh import fresh_store as _fresh_store

if TYPE_CHECKING:
    from journal import EventJournal

    from ..file import FileEventStore

__all__ = (
    "event_journal",
    "event_store",
    "file_event_store",
    "fresh_journal",
    "fresh_store",
    "pytest_fixture_setup",
)

#: The async fixtures, which need a runner.
_ASYNC_FIXTURES = frozenset({"event_store", "file_event_store", "event_journal"})

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


def _no_runner_message(name: str) -> str:
    return (
        f"the {name} fixture is async and no async test runner is active: install "
        "pytest-asyncio (pip install 'eventjournal[test]'), or mark the test "
        "@pytest.mark.anyio to run it with anyio's pytest plugin"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    """Refuse our async fixtures up front, by name, when nothing can run them.

    Without this, pytest's own error says only that async fixtures are unsupported.
    """
    if fixturedef.argname not in _ASYNC_FIXTURES:
        return
    plugins = request.config.pluginmanager
    if plugins.has_plugin("asyncio"):
        return
    if plugins.has_plugin("anyio") and "anyio_backend" in request.fixturenames:
        return
    pytest.fail(_no_runner_message(fixturedef.argname), pytrace=False)


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


@pytest.fixture(scope="session")
def fresh_store() -> Callable[..., Any]:
    """:func:`eventstore.testing.fresh_store`, for ``@given`` tests: one store per example."""
    return _fresh_store


@pytest.fixture(scope="session")
def fresh_journal() -> Callable[..., Any]:
    """:func:`journal.testing.fresh_journal`, for ``@given`` tests: one journal per example."""
    from journal.testing import fresh_journal as opener

    return opener
