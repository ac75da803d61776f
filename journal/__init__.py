"""journal: an event store joined to live subscribers.

:class:`EventJournal` stores, then publishes, every write; its subscriptions
replay the history and continue live with no gap and no duplicate.
:func:`open_journal` opens one over an embedded file store. :func:`record_run`
and :func:`replay` record an agent's steps and re-run it against them, serving
the recorded tool and model results; :meth:`EventJournal.diff` compares
branches; :meth:`EventJournal.consumer` processes the global feed durably
(a :class:`Consumer`, with retries and :class:`DeadLetter` records).
"""

from eventstore import DeadLetter as DeadLetter
from stream import Subscription as Subscription

from ._consumer import Consumer as Consumer
from ._consumer import ConsumerBusy as ConsumerBusy
from ._diff import BranchDiff as BranchDiff
from ._journal import EventJournal as EventJournal
from ._journal import open_journal as open_journal
from ._replay import AgentRun as AgentRun
from ._replay import Divergence as Divergence
from ._replay import ReplayDiverged as ReplayDiverged
from ._replay import ReplayStep as ReplayStep
from ._replay import record_run as record_run
from ._replay import replay as replay
from ._typed import EventDecodeError as EventDecodeError
from ._typed import EventTypes as EventTypes
from ._typed import JournalError as JournalError
from ._typed import UnknownEventKind as UnknownEventKind

__all__ = (
    "AgentRun",
    "BranchDiff",
    "Consumer",
    "ConsumerBusy",
    "DeadLetter",
    "Divergence",
    "EventDecodeError",
    "EventJournal",
    "EventTypes",
    "JournalError",
    "ReplayDiverged",
    "ReplayStep",
    "Subscription",
    "UnknownEventKind",
    "open_journal",
    "record_run",
    "replay",
)
