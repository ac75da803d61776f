"""Private snapshots of records: what the memory store keeps and the hub fans out.

History is immutable only if nobody outside the engine holds a reference into
it. A :class:`Snapshot` owns its payload: :meth:`Snapshot.freeze` copies what
the caller could still mutate, and every :meth:`Snapshot.thaw` builds a new
record that no other caller, reader or subscriber shares.

A payload is kept in one of three forms, and ``thaw`` tells them apart by type:

* ``None``, ``bool``, ``int``, ``float`` and ``str`` are immutable: kept as is;
* otherwise its JSON encoding (``bytes`` never is a payload), decoded per thaw.
  Payloads are validated to round-trip through JSON exactly, so the decoded
  value equals the original, as the file store's decoded lines do;
* with ``flat=True``, a dict or list holding only immutable values is kept as a
  private shallow copy and copied again per thaw: sorting that out costs about
  an encoding once, and each copy is then ~3x cheaper than decoding, which pays
  when one snapshot is thawed for many subscribers.

A snapshot holds no reference to the caller's objects and, like the store's
scalar fields, nothing the garbage collector must track: a memory store of
millions of records costs collections nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ._json import decode as _decode
from ._json import encode as _encode
from ._records import EventRecord

__all__ = ("Snapshot",)

_SCALARS = frozenset({type(None), bool, int, float, str})


def _flat(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return _SCALARS.issuperset(map(type, value.values()))
    return kind is list and _SCALARS.issuperset(map(type, value))


class Snapshot(msgspec.Struct, gc=False):
    """The fields of an :class:`EventRecord`, its payload in a form nobody else can reach.

    Build one with :meth:`freeze`; :meth:`thaw` returns a new, equal record.
    """

    session_id: str
    branch_id: str
    sequence: int
    kind: str
    event_id: str
    recorded_at: datetime
    data: Any
    metadata: Any
    position: int = 0

    @classmethod
    def freeze(
        cls, record: EventRecord, *, flat: bool = False, position: int | None = None
    ) -> Snapshot:
        """Snapshot a validated ``record``; changing it later changes nothing here.

        :param flat: keep flat dicts and lists as copies (cheaper to thaw often).
        :param position: the feed position to keep instead of the record's.
        :raises TypeError: if the payload is not JSON (a validated one always is).
        """
        data = record.data
        if type(data) not in _SCALARS:
            data = data.copy() if flat and _flat(data) else _encode(data)
        metadata: Any = record.metadata
        if not metadata:
            metadata = None
        elif flat and _flat(metadata):
            metadata = metadata.copy()
        else:
            metadata = _encode(metadata)
        return cls(
            record.session_id,
            record.branch_id,
            record.sequence,
            record.kind,
            record.event_id,
            record.recorded_at,
            data,
            metadata,
            record.position if position is None else position,
        )

    def thaw(self) -> EventRecord:
        """A new record equal to the snapshot's, sharing nothing mutable with anyone."""
        # _thaw inlined twice: the hub calls this once per delivery.
        data = self.data
        kind = type(data)
        if kind is bytes:
            data = _decode(data)
        elif kind is dict or kind is list:
            data = data.copy()
        metadata = self.metadata
        if metadata is None:
            metadata = {}
        elif type(metadata) is bytes:
            metadata = _decode(metadata)
        else:
            metadata = metadata.copy()
        return EventRecord(
            self.session_id,
            self.branch_id,
            self.sequence,
            self.kind,
            data,
            metadata,
            self.event_id,
            self.recorded_at,
            self.position,
        )
