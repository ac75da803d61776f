"""Journal-level test helpers, beside the store-level kit in :mod:`eventstore.testing`.

``fresh_journal`` gives each Hypothesis example its own journal (a pytest
fixture would be shared by every example of a test); ``assert_replays``
checks that an agent still replays its recorded session step for step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from eventstore import MAIN, EventStore, MemoryEventStore

from ._journal import EventJournal
from ._replay import AgentRun, replay

__all__ = ("assert_replays", "fresh_journal")


@asynccontextmanager
async def fresh_journal(
    factory: Callable[[], EventStore] | None = None, **options: Any
) -> AsyncIterator[EventJournal]:
    """A new, open :class:`EventJournal`, closed (with its store) on exit.

    :param factory: makes an unopened store (default: :class:`~eventstore.MemoryEventStore`).
    :param options: for the journal (``hub``, ``types``).
    :raises: whatever opening or closing the store raises.
    """
    store = MemoryEventStore() if factory is None else factory()
    async with EventJournal(store, **options) as journal:
        yield journal


async def assert_replays(
    journal: EventJournal,
    session_id: str,
    agent: Callable[[AgentRun], Awaitable[Any]],
    *,
    branch_id: str = MAIN,
    serve: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> AgentRun:
    """Replay ``agent`` against the recorded branch; fail at the first step that differs.

    :returns: the finished run (``run.served``, ``run.executed``).
    :raises ReplayDiverged: (an :class:`AssertionError`) at the divergence.
    :raises: whatever ``agent`` raises.
    """
    async with replay(
        journal, session_id, branch_id=branch_id, serve=serve, skip=skip, stop_on_divergence=True
    ) as run:
        await agent(run)
    return run
