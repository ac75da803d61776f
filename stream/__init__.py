"""stream: the broadcast hub and catch-up subscriptions.

:class:`EventStreamHub` fans published events out to bounded per-subscriber
buffers without ever blocking the writer. A :class:`Subscription` joins a
store's history to the hub's live events with no gap and no duplicate:
:class:`BranchSubscription` for one branch's logical history,
:class:`AllSubscription` for live events of every session.
:class:`FeedPump` follows a store's global feed and :class:`FeedSubscription`
delivers it from any saved position, backlog then live, in position order.
"""

from ._feed import FeedPump as FeedPump
from ._feed import FeedSubscription as FeedSubscription
from ._hub import EventReceiver as EventReceiver
from ._hub import EventStreamHub as EventStreamHub
from ._hub import HubStatistics as HubStatistics
from ._hub import ReceiverStatistics as ReceiverStatistics
from ._subscription import AllSubscription as AllSubscription
from ._subscription import BranchSubscription as BranchSubscription
from ._subscription import Subscription as Subscription

__all__ = (
    "AllSubscription",
    "BranchSubscription",
    "EventReceiver",
    "EventStreamHub",
    "FeedPump",
    "FeedSubscription",
    "HubStatistics",
    "ReceiverStatistics",
    "Subscription",
)
