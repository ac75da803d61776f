"""The consumer-state contract (issue 15), over every backend of the ``store_factory`` fixture."""

from eventstore.testing import ConsumerStateContract


class TestConsumerStateContract(ConsumerStateContract):
    pass
