"""How LangGraph checkpoints and writes are laid out as eventjournal records.

Three kinds, each record tagged ``metadata["key"]`` so that
:meth:`~eventstore.EventStore.get_by_key` finds it in about one lookup:

- ``langgraph.checkpoint``: ``{"ns", "id", "parent", "checkpoint", "metadata"}``,
  key: the checkpoint id (``"<ns>/<id>"`` in a subgraph's namespace). The
  checkpoint, channel values included, is the saver's ``serde.dumps_typed``
  as ``[type, base64]``; the metadata is plain JSON when it is (it always is
  for LangGraph's own), else ``{"$serde": [type, base64]}``.
- ``langgraph.writes``: ``{"ns", "checkpoint_id", "writes"}``, key
  ``"writes:" + <checkpoint key>``: every pending write of that checkpoint so
  far, as ``[task_id, idx, channel, type, base64, task_path]`` in
  :func:`~langgraph.checkpoint.base.writes_sort_key` order. Each
  ``put_writes`` appends the merged set, so the last one written is complete.
- ``langgraph.deleted``: ``{"ns", "id"}`` under a checkpoint's key: the
  checkpoint was pruned or its run deleted. The log is append-only, so a
  deletion is a later record under the same key.

Checkpoint ids are LangGraph's uuid6 strings; a namespace is never parsed
back out of a key.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from langgraph.checkpoint.serde.base import SerializerProtocol

__all__ = (
    "CHECKPOINT",
    "DELETED",
    "KINDS",
    "WRITES",
    "Codec",
    "checkpoint_key",
    "writes_key",
)

CHECKPOINT = "langgraph.checkpoint"
WRITES = "langgraph.writes"
DELETED = "langgraph.deleted"
KINDS = (CHECKPOINT, WRITES, DELETED)

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def checkpoint_key(ns: str, checkpoint_id: str) -> str:
    """The ``metadata["key"]`` of a checkpoint (and of its deletion)."""
    return f"{ns}/{checkpoint_id}" if ns else checkpoint_id


def writes_key(ns: str, checkpoint_id: str) -> str:
    """The ``metadata["key"]`` of a checkpoint's pending writes."""
    return "writes:" + checkpoint_key(ns, checkpoint_id)


def _plain_json(value: Any) -> bool:
    try:
        return bool(_json_decode(_json_encode(value)) == value)
    except (TypeError, ValueError, msgspec.MsgspecError):
        return False


class Codec:
    """Record payloads from and to LangGraph values, with one ``serde``."""

    __slots__ = ("serde",)

    def __init__(self, serde: SerializerProtocol) -> None:
        self.serde = serde

    def blob(self, value: Any) -> list[str]:
        kind, raw = self.serde.dumps_typed(value)
        return [kind, base64.b64encode(raw).decode("ascii")]

    def unblob(self, kind: str, encoded: str) -> Any:
        return self.serde.loads_typed((kind, base64.b64decode(encoded)))

    def checkpoint_data(
        self, ns: str, checkpoint: Any, metadata: dict[str, Any], parent: str | None
    ) -> dict[str, Any]:
        plain = _plain_json(metadata) and list(metadata) != ["$serde"]
        stored_metadata = metadata if plain else {"$serde": self.blob(metadata)}
        return {
            "ns": ns,
            "id": checkpoint["id"],
            "parent": parent,
            "checkpoint": self.blob(checkpoint),
            "metadata": stored_metadata,
        }

    def checkpoint(self, data: dict[str, Any]) -> Any:
        return self.unblob(*data["checkpoint"])

    def metadata(self, data: dict[str, Any]) -> Any:
        stored = data["metadata"]
        if isinstance(stored, dict) and len(stored) == 1 and "$serde" in stored:
            return self.unblob(*stored["$serde"])
        return stored

    def write_entry(
        self, task_id: str, idx: int, channel: str, value: Any, task_path: str
    ) -> list[Any]:
        return [task_id, idx, channel, *self.blob(value), task_path]

    def pending_writes(self, data: dict[str, Any] | None) -> list[tuple[str, str, Any]]:
        if data is None:
            return []
        return [(e[0], e[2], self.unblob(e[3], e[4])) for e in data["writes"]]
