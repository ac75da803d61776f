"""``BranchDiff``: where two branches of a session part and what each did since.

Two branches share history exactly as far as their lineages read the same
stored events: the copy-on-write segments (:func:`eventstore._lineage.segments`)
say so without reading a single record, so only the two tails are read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from eventstore import BranchInfo, EventRecord, EventStore
from eventstore._lineage import BranchLike, segments

__all__ = ("BranchDiff", "common_sequence", "diff_branches")


class BranchDiff(msgspec.Struct, frozen=True):
    """Two branches compared: their last shared sequence and each side's records after it.

    :ivar common_sequence: the last sequence both histories share (0: none).
    :ivar only_a: the first branch's records after ``common_sequence``, ascending.
    :ivar only_b: the second branch's records after ``common_sequence``, ascending.
    """

    common_sequence: int
    only_a: list[EventRecord]
    only_b: list[EventRecord]


def common_sequence(
    branches: Mapping[str, BranchLike] | Sequence[BranchInfo], a: str, b: str
) -> int:
    """The last sequence the histories of branches ``a`` and ``b`` share (0: nothing).

    :param branches: the session's branches, by id or as :meth:`list_branches` returns them;
        ``a``, ``b`` and their ancestors must be among them.
    :raises KeyError: if one of them is missing.
    """
    by_id = branches if isinstance(branches, Mapping) else {i.branch_id: i for i in branches}
    common = 0
    for (owner_a, first_a, last_a), (owner_b, first_b, last_b) in zip(
        segments(by_id, a, 1, None), segments(by_id, b, 1, None), strict=False
    ):
        if owner_a != owner_b or first_a != first_b:
            break
        common = min(last_a, last_b)
        if last_a != last_b:
            break
    return common


async def diff_branches(store: EventStore, session_id: str, a: str, b: str) -> BranchDiff:
    """Compare branches ``a`` and ``b`` of a session (see :meth:`EventJournal.diff`).

    Each side is read up to the head the branch had when the branches were
    listed, so the two tails and the shared part belong to one moment.

    :raises BranchNotFound: if either branch does not exist (``main`` always does).
    :raises InvalidIdentifier: for a bad id.
    :raises StoreClosed: if the store is closed.
    """
    infos: dict[str, BranchInfo] = {
        info.branch_id: info for info in await store.list_branches(session_id)
    }
    for branch_id in (a, b):
        if branch_id not in infos:
            infos[branch_id] = await store.branch_info(session_id, branch_id)
    common = common_sequence(infos, a, b)
    only_a = await store.read(session_id, a, common + 1, to_sequence=infos[a].head)
    only_b = await store.read(session_id, b, common + 1, to_sequence=infos[b].head)
    return BranchDiff(common, only_a, only_b)
