"""``fresh_store`` and ``fresh_file_store``: one new store per Hypothesis example.

A function-scoped pytest fixture is made once per *test*, while ``@given``
runs the test body once per *example*: Hypothesis refuses that combination
(its ``function_scoped_fixture`` health check), since every example would share
the store. Opening the store inside the body, with these context managers,
gives each example its own and passes every default health check::

    @given(transcripts())
    async def test_agent(steps):
        async with fresh_store() as store:
            ...
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from .._base import EventStore
from ..file import FileEventStore
from ..memory import MemoryEventStore

__all__ = ("fresh_file_store", "fresh_store")


@asynccontextmanager
async def fresh_store(
    factory: Callable[[], EventStore] | None = None,
) -> AsyncIterator[EventStore]:
    """A new, open store, closed on exit.

    :param factory: makes an unopened store (default: :class:`MemoryEventStore`).
    :raises: whatever opening or closing the store raises.
    """
    store = MemoryEventStore() if factory is None else factory()
    async with store:
        yield store


@asynccontextmanager
async def fresh_file_store(**opts: Any) -> AsyncIterator[FileEventStore]:
    """A new, open :class:`~eventstore.file.FileEventStore` in a temporary directory.

    The directory is removed on exit. ``opts`` go to the store; the default
    ``durability`` is ``"write"``, which keeps a hundred examples fast (the
    bytes still reach the OS before each append returns).

    :raises ValueError: for a bad store option.
    """
    opts.setdefault("durability", "write")
    with tempfile.TemporaryDirectory(prefix="eventjournal-") as root:
        async with FileEventStore(root, **opts) as store:
            yield store
