"""``journal.diff``: the last shared sequence and each side's records after it."""

from __future__ import annotations

import pytest

from eventstore import BranchNotFound
from journal import BranchDiff, EventJournal
from tests.conftest import StoreFactory


async def test_diff_over_every_backend(store_factory: StoreFactory) -> None:
    async with EventJournal(store_factory()) as journal:
        for n in range(1, 5):
            await journal.record("s", "step", n)
        await journal.create_branch("s", "a", fork_sequence=2)
        await journal.create_branch("s", "b", from_branch="a")
        await journal.record("s", "step", "a3", branch_id="a")
        await journal.record("s", "step", "b3", branch_id="b")
        await journal.create_branch("s", "c", from_branch="a")

        found = await journal.diff("s", "main", "a")
        assert isinstance(found, BranchDiff)
        assert found.common_sequence == 2
        assert [r.data for r in found.only_a] == [3, 4]
        assert [r.data for r in found.only_b] == ["a3"]

        # Siblings share their parent's history up to the earlier fork point.
        siblings = await journal.diff("s", "b", "c")
        assert siblings.common_sequence == 2
        assert [r.data for r in siblings.only_a] == ["b3"]
        assert [r.data for r in siblings.only_b] == ["a3"]

        assert (await journal.diff("s", "a", "c")).common_sequence == 3
        same = await journal.diff("s", "main", "main")
        assert (same.common_sequence, same.only_a, same.only_b) == (4, [], [])
        assert await journal.diff("unknown", "main", "main") == BranchDiff(0, [], [])
        with pytest.raises(BranchNotFound):
            await journal.diff("s", "main", "nope")
