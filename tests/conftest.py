"""Shared fixtures: one ``store_factory`` parametrized over every backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import EventStore, MemoryEventStore

StoreFactory = Callable[[], EventStore]

BACKENDS = ["memory"]


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A callable returning a fresh, unopened store of the parametrized backend."""
    if request.param == "memory":
        return MemoryEventStore
    raise AssertionError(request.param)
