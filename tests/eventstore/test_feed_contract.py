"""The feed contract (issue 13), run over every backend of the ``store_factory`` fixture."""

from eventstore.testing import FeedContract


class TestFeedContract(FeedContract):
    pass
