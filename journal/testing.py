"""Journal-level test helpers, beside the store-level kit in :mod:`eventstore.testing`.

``fresh_journal`` gives each Hypothesis example its own journal (a pytest
fixture would be shared by every example of a test); ``assert_replays``
checks that an agent still replays its recorded session step for step.
"""

from ._testkit import assert_replays as assert_replays
from ._testkit import fresh_journal as fresh_journal

__all__ = ("assert_replays", "fresh_journal")
