"""Test kit: the contract suite, Hypothesis strategies and a store state machine.

``import eventstore.testing`` needs pytest (the contract suite is pytest
classes); the Hypothesis parts load on first use, so the pytest plugin that
lives here stays cheap to import.
"""

import typing as _typing

from ._contract import EventStoreContract as EventStoreContract
from ._contract import FeedContract as FeedContract
from ._contract import LifecycleContract as LifecycleContract
from ._contract import PersistentLifecycleContract as PersistentLifecycleContract
from ._contract import PersistentStoreContract as PersistentStoreContract

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

__all__ = (
    "Append",
    "AppendBatch",
    "EventStoreContract",
    "FeedContract",
    "Fork",
    "Merge",
    "LifecycleContract",
    "Operation",
    "PersistentLifecycleContract",
    "PersistentStoreContract",
    "apply_operation",
    "apply_operations",
    "event_ids",
    "event_kinds",
    "event_records",
    "hostile_identifiers",
    "identifiers",
    "json_values",
    "metadata_values",
    "operations",
    "store_state_machine",
    "timestamps",
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
