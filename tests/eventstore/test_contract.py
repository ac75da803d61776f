"""The contract suite, run over every backend of the ``store_factory`` fixture."""

from eventstore.testing import EventStoreContract, PersistentStoreContract


class TestContract(EventStoreContract):
    pass


class TestPersistentContract(PersistentStoreContract):
    pass
