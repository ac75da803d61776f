"""The lifecycle contract (close, delete, list, expire), over every backend."""

from eventstore.testing import LifecycleContract, PersistentLifecycleContract


class TestLifecycleContract(LifecycleContract):
    pass


class TestPersistentLifecycleContract(PersistentLifecycleContract):
    pass
