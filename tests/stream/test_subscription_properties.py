"""Properties: whatever the publish order, buffer size and consumer pace, nothing is lost.

Hypothesis draws a schedule; asyncio runs it deterministically (the only
suspension points are the schedule's own yields).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventstore import EventRecord, MemoryEventStore
from stream import AllSubscription, BranchSubscription, EventStreamHub

from ._helpers import ev

#: Fail fast on a hang: these scenarios finish in milliseconds.
GUARD_SECONDS = 10

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def _consume(
    sub: BranchSubscription | AllSubscription, count: int, slow: bool = False
) -> list[EventRecord]:
    out: list[EventRecord] = []
    async for event in sub:
        out.append(event)
        if len(out) == count:
            break
        if slow:
            await asyncio.sleep(0)  # let the writer get ahead between events
    return out


@SETTINGS
@given(
    total=st.integers(1, 40),
    buffer=st.integers(1, 8) | st.just(1024),
    after=st.just(0) | st.integers(0, 45),
    page=st.integers(1, 7) | st.just(1000),
    schedule=st.lists(st.sampled_from(["store", "publish", "yield", "repeat"]), max_size=120),
    picks=st.lists(st.integers(0, 99), min_size=1, max_size=20),
    slow=st.booleans(),
)
# A live reader's buffer of 1 overflows and nothing follows: it must re-read 2..5.
@example(
    total=5,
    buffer=1,
    after=0,
    page=1000,
    schedule=["yield", *["store"] * 5, *["publish"] * 5],
    picks=[0],
    slow=False,
)
# A reader that is live sees 2 before 1: it must fetch 1 from the store.
@example(
    total=3,
    buffer=1024,
    after=0,
    page=1000,
    schedule=["yield", "store", "store", "publish", "yield"],
    picks=[1],
    slow=False,
)
def test_branch_subscription_yields_each_sequence_once_in_order(
    total: int,
    buffer: int,
    after: int,
    page: int,
    schedule: list[str],
    picks: list[int],
    slow: bool,
) -> None:
    async def scenario() -> list[int]:
        store = MemoryEventStore()
        hub = EventStreamHub(buffer=buffer)
        sub = BranchSubscription(store, hub, "s", after_sequence=after, page_size=page)
        wanted = max(0, total - after)
        reader = asyncio.create_task(_consume(sub, wanted, slow)) if wanted else None
        unpublished: list[EventRecord] = []
        # Store in order (the store enforces it), publish in any order, some twice.
        for number, step in enumerate(schedule):
            head = await store.head("s")
            if step == "store" and head < total:
                unpublished.append(await store.append(ev("s", head + 1)))
            elif step == "publish" and unpublished:
                index = picks[number % len(picks)] % len(unpublished)
                hub.publish(unpublished.pop(index))
            elif step == "repeat" and head:
                hub.publish((await store.read("s", from_sequence=head))[0])
            else:
                await asyncio.sleep(0)
        # Then every event not yet published is, once, at a pace the reader keeps up
        # with: whatever it still misses was lost by the subscription, not the buffer.
        for n in range(await store.head("s") + 1, total + 1):
            unpublished.append(await store.append(ev("s", n)))
        for event in sorted(unpublished, key=lambda e: e.sequence):
            hub.publish(event)
            await asyncio.sleep(0)
        if reader is None:
            sub.close()
            return []
        async with asyncio.timeout(GUARD_SECONDS):
            got = await reader
        sub.close()
        return [e.sequence for e in got]

    assert asyncio.run(scenario()) == list(range(after + 1, total + 1))


def _kind(sequence: int) -> str:
    return "even" if sequence % 2 == 0 else "odd"


@SETTINGS
@given(
    schedule=st.lists(st.sampled_from(["a", "b", "c", "yield"]), max_size=80),
    buffer=st.integers(1, 6),
    page=st.integers(1, 5),
    kinds=st.sampled_from([None, ["even"], ["odd"]]),
    slow=st.booleans(),
)
def test_all_subscription_yields_each_branch_complete_in_order(
    schedule: list[str], buffer: int, page: int, kinds: list[str] | None, slow: bool
) -> None:
    async def scenario() -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        store = MemoryEventStore()
        hub = EventStreamHub(buffer=buffer)
        sub = AllSubscription(store, hub, kinds=kinds, page_size=page)
        heads: dict[str, int] = defaultdict(int)
        expected: dict[str, list[int]] = defaultdict(list)
        for step in schedule:
            if step != "yield":
                heads[step] += 1
                if kinds is None or _kind(heads[step]) in kinds:
                    expected[step].append(heads[step])
        count = sum(len(v) for v in expected.values())
        reader = asyncio.create_task(_consume(sub, count, slow)) if count else None
        heads.clear()
        for step in schedule:
            if step == "yield":
                await asyncio.sleep(0)
                continue
            heads[step] += 1
            n = heads[step]
            # One journal per process publishes each branch in sequence order.
            hub.publish(await store.append(ev(step, n, _kind(n))))
        async with asyncio.timeout(GUARD_SECONDS):
            got = await reader if reader is not None else []
        sub.close()
        delivered: dict[str, list[int]] = defaultdict(list)
        for event in got:
            delivered[event.session_id].append(event.sequence)
        return dict(delivered), dict(expected)

    delivered, expected = asyncio.run(scenario())
    assert delivered == expected
