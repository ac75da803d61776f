"""Test kit: the contract suite, strategies, a store state machine and an agent-loop kit.

The agent-loop kit: transcript strategies, invariant checks, fresh stores per example.

``import eventstore.testing`` needs pytest (the contract suite is pytest
classes); the Hypothesis parts load on first use, so the pytest plugin that
lives here stays cheap to import. ``journal.testing`` adds ``fresh_journal``.
"""

import typing as _typing

from ._contract import ConsumerStateContract as ConsumerStateContract
from ._contract import EventStoreContract as EventStoreContract
from ._contract import FeedContract as FeedContract
from ._contract import LifecycleContract as LifecycleContract
from ._contract import PersistentLifecycleContract as PersistentLifecycleContract
from ._contract import PersistentStoreContract as PersistentStoreContract
from ._fresh import fresh_file_store as fresh_file_store
from ._fresh import fresh_store as fresh_store
from ._invariants import HistorySource as HistorySource
from ._invariants import InvariantViolation as InvariantViolation
from ._invariants import branch_histories as branch_histories
from ._invariants import check_agent_history as check_agent_history
from ._invariants import check_contiguous as check_contiguous
from ._invariants import check_fold as check_fold
from ._invariants import check_nothing_after_end as check_nothing_after_end
from ._invariants import check_session as check_session
from ._invariants import check_tool_calls_answered as check_tool_calls_answered

if _typing.TYPE_CHECKING:
    from ._operations import Append as Append
    from ._operations import AppendBatch as AppendBatch
    from ._operations import Fork as Fork
    from ._operations import Merge as Merge
    from ._operations import Operation as Operation
    from ._operations import apply_operation as apply_operation
    from ._operations import apply_operations as apply_operations
    from ._operations import operations as operations
    from ._state_machine import store_state_machine as store_state_machine
    from ._strategies import event_ids as event_ids
    from ._strategies import event_kinds as event_kinds
    from ._strategies import event_records as event_records
    from ._strategies import hostile_identifiers as hostile_identifiers
    from ._strategies import identifiers as identifiers
    from ._strategies import json_values as json_values
    from ._strategies import metadata_values as metadata_values
    from ._strategies import timestamps as timestamps
    from ._transcripts import AgentTranscript as AgentTranscript
    from ._transcripts import TranscriptFork as TranscriptFork
    from ._transcripts import forked_transcripts as forked_transcripts
    from ._transcripts import interleaved_transcripts as interleaved_transcripts
    from ._transcripts import messages as messages
    from ._transcripts import tool_exchanges as tool_exchanges
    from ._transcripts import transcripts as transcripts
    from ._transcripts import write_transcript as write_transcript

__all__ = (
    "AgentTranscript",
    "Append",
    "AppendBatch",
    "ConsumerStateContract",
    "EventStoreContract",
    "FeedContract",
    "Fork",
    "HistorySource",
    "InvariantViolation",
    "Merge",
    "LifecycleContract",
    "Operation",
    "PersistentLifecycleContract",
    "PersistentStoreContract",
    "TranscriptFork",
    "apply_operation",
    "apply_operations",
    "branch_histories",
    "check_agent_history",
    "check_contiguous",
    "check_fold",
    "check_nothing_after_end",
    "check_session",
    "check_tool_calls_answered",
    "event_ids",
    "event_kinds",
    "event_records",
    "forked_transcripts",
    "fresh_file_store",
    "fresh_store",
    "hostile_identifiers",
    "identifiers",
    "interleaved_transcripts",
    "json_values",
    "messages",
    "metadata_values",
    "operations",
    "store_state_machine",
    "timestamps",
    "tool_exchanges",
    "transcripts",
    "write_transcript",
)

# Hypothesis-backed names and the module that defines them, imported on first access.
_LAZY = {
    "Append": "_operations",
    "AppendBatch": "_operations",
    "Fork": "_operations",
    "Merge": "_operations",
    "Operation": "_operations",
    "apply_operation": "_operations",
    "apply_operations": "_operations",
    "operations": "_operations",
    "store_state_machine": "_state_machine",
    "event_ids": "_strategies",
    "event_kinds": "_strategies",
    "event_records": "_strategies",
    "hostile_identifiers": "_strategies",
    "identifiers": "_strategies",
    "json_values": "_strategies",
    "metadata_values": "_strategies",
    "timestamps": "_strategies",
    "AgentTranscript": "_transcripts",
    "TranscriptFork": "_transcripts",
    "forked_transcripts": "_transcripts",
    "interleaved_transcripts": "_transcripts",
    "messages": "_transcripts",
    "tool_exchanges": "_transcripts",
    "transcripts": "_transcripts",
    "write_transcript": "_transcripts",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
