"""Test kit: the contract suite any backend can run (more lands with the testing-kit work)."""

from ._contract import EventStoreContract as EventStoreContract
from ._contract import PersistentStoreContract as PersistentStoreContract

__all__ = ("EventStoreContract", "PersistentStoreContract")
