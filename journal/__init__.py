"""journal: an event store joined to live subscribers.

:class:`EventJournal` stores, then publishes, every write; its subscriptions
replay the history and continue live with no gap and no duplicate.
:func:`open_journal` opens one over an embedded file store.
"""

from stream import Subscription as Subscription

from ._journal import EventJournal as EventJournal
from ._journal import open_journal as open_journal
from ._typed import EventDecodeError as EventDecodeError
from ._typed import EventTypes as EventTypes
from ._typed import JournalError as JournalError
from ._typed import UnknownEventKind as UnknownEventKind

__all__ = (
    "EventDecodeError",
    "EventJournal",
    "EventTypes",
    "JournalError",
    "Subscription",
    "UnknownEventKind",
    "open_journal",
)
