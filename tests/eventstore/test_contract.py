"""The contract suite, run over every backend of the ``store_factory`` fixture."""

import pytest

from eventstore.testing import EventStoreContract, PersistentStoreContract


class TestContract(EventStoreContract):
    pass


class TestPersistentContract(PersistentStoreContract):
    @pytest.fixture(autouse=True)
    def _persistent_only(self, request: pytest.FixtureRequest) -> None:
        # The memory backend forgets on close by design; reopen applies to the others.
        if request.node.callspec.params.get("store_factory") == "memory":
            pytest.skip("memory store is not persistent")
