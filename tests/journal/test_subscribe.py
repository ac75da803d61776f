"""Catch-up subscriptions over every backend: backlog, seam, lag, forks, merges."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import pytest

from eventstore import EventRecord, EventStore, MemoryEventStore, StoreClosed
from journal import EventJournal
from stream import EventStreamHub
from tests.stream._helpers import drain, ev, seqs, take

StoreFactory = Callable[[], EventStore]
JournalFactory = Callable[..., EventJournal]


@pytest.fixture
async def make_journal(store_factory: StoreFactory) -> AsyncIterator[JournalFactory]:
    """Open journals over the parametrized backend; all closed at teardown."""
    opened: list[EventJournal] = []

    def make(buffer: int = 1024) -> EventJournal:
        journal = EventJournal(store_factory(), EventStreamHub(buffer=buffer))
        opened.append(journal)
        return journal

    yield make
    for journal in opened:
        await journal.close()


async def fill(journal: EventJournal, session: str, count: int, branch: str = "main") -> None:
    """Append ``count`` events after the head in batches of 1000."""
    head = await journal.head(session, branch)
    for start in range(head + 1, head + count + 1, 1000):
        stop = min(start + 1000, head + count + 1)
        await journal.append_batch([ev(session, n, branch=branch) for n in range(start, stop)])


async def test_seam_backlog_then_live_without_gap_or_duplicate(
    make_journal: JournalFactory,
) -> None:
    journal = await make_journal().open()
    await fill(journal, "s", 300)
    halfway = asyncio.Event()

    async def writer() -> None:
        for n in range(700):
            await journal.record("s", "message", {"n": n})
            if n == 50:
                halfway.set()
            if n % 7 == 0:
                await asyncio.sleep(0)  # interleave with the reader

    task = asyncio.create_task(writer())
    await halfway.wait()
    async with journal.subscribe("s", after_sequence=100) as sub:
        got = await take(sub, 900)
        await task
        assert seqs(got) == list(range(101, 1001))
        assert sub.position == 1000
    assert [e.event_id for e in got] == [e.event_id for e in await journal.read("s", "main", 101)]


async def test_slow_subscriber_with_tiny_buffer_receives_everything(
    make_journal: JournalFactory,
) -> None:
    journal = await make_journal(buffer=4).open()
    sub = journal.subscribe("s")
    received: list[EventRecord] = []
    stalled = asyncio.Event()

    async def slow_reader() -> None:
        async for event in sub:
            received.append(event)
            if event.sequence == 10:
                await stalled.wait()  # the writer races far ahead meanwhile
            await asyncio.sleep(0)
            if event.sequence == 2000:
                return

    reader = asyncio.create_task(slow_reader())
    for n in range(2000):
        await journal.record("s", "message", {"n": n})
        if n == 1000:
            stalled.set()
        if n % 3 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(reader, 60)
    assert seqs(received) == list(range(1, 2001))
    assert sub.statistics().dropped > 0  # it really fell behind the buffer
    await sub.aclose()


async def test_many_subscribers_each_get_exactly_their_session(
    make_journal: JournalFactory,
) -> None:
    journal = await make_journal().open()
    sessions = [f"session-{n}" for n in range(10)]
    subs = [journal.subscribe(sessions[n % 10]) for n in range(200)]
    readers = [asyncio.create_task(take(sub, 30)) for sub in subs]
    for round_ in range(30):
        for session in sessions:
            await journal.record(session, "message", {"round": round_})
    results = await asyncio.gather(*readers)
    stored = {s: [e.event_id for e in await journal.read(s)] for s in sessions}
    for n, got in enumerate(results):
        session = sessions[n % 10]
        assert {e.session_id for e in got} == {session}
        assert [e.event_id for e in got] == stored[session]
    for sub in subs:
        await sub.aclose()
    assert journal.hub.statistics().subscribers == 0


async def test_fork_yields_inherited_then_own_then_live_but_never_parent_later_events(
    make_journal: JournalFactory,
) -> None:
    journal = await make_journal().open()
    await fill(journal, "s", 10)
    await journal.create_branch("s", "alt", fork_sequence=5)
    await journal.record("s", "message", {"on": "alt"}, branch_id="alt")
    async with journal.subscribe("s", "alt") as sub:
        backlog = await take(sub, 6)
        assert seqs(backlog) == [1, 2, 3, 4, 5, 6]
        assert [e.branch_id for e in backlog] == ["main"] * 5 + ["alt"]
        await journal.record("s", "message", {"on": "main"})  # parent, after the fork
        live = await journal.record("s", "message", {"on": "alt"}, branch_id="alt")
        assert await take(sub, 1) == [live]
        assert live.sequence == 7
        await journal.close()
        assert await drain(sub) == []


async def test_subscription_to_a_branch_created_later_reads_its_inheritance(
    make_journal: JournalFactory,
) -> None:
    journal = await make_journal().open()
    await fill(journal, "s", 4)
    async with journal.subscribe("s", "later") as sub:
        await journal.create_branch("s", "later")
        await journal.record("s", "message", branch_id="later")
        got = await take(sub, 5)
    assert seqs(got) == [1, 2, 3, 4, 5]
    assert [e.branch_id for e in got] == ["main"] * 4 + ["later"]


async def test_merged_events_reach_target_subscribers(make_journal: JournalFactory) -> None:
    journal = await make_journal().open()
    await fill(journal, "s", 3)
    await journal.create_branch("s", "experiment")
    for n in range(2):
        await journal.record("s", "tool_call", {"n": n}, branch_id="experiment")
    async with journal.subscribe("s", after_sequence=3) as main_sub:
        result = await journal.merge_branch("s", "experiment", "main")
        merged = await take(main_sub, 2)
    assert (result.merged_events, result.target_head) == (2, 5)
    assert seqs(merged) == [4, 5]
    assert {e.branch_id for e in merged} == {"main"}
    assert [e.metadata["merged_from"]["sequence"] for e in merged] == [4, 5]
    assert [e.metadata["merged_from"]["branch_id"] for e in merged] == ["experiment"] * 2


async def test_closing_the_journal_ends_subscriptions_and_leaves_no_task(
    make_journal: JournalFactory,
) -> None:
    journal = await make_journal().open()
    await fill(journal, "s", 3)
    caught_up = asyncio.Event()
    seen: list[EventRecord] = []

    async def follow() -> None:
        async for event in journal.subscribe("s"):
            seen.append(event)
            if event.sequence == 3:
                caught_up.set()

    readers = [
        asyncio.create_task(follow()),
        asyncio.create_task(drain(journal.subscribe("s", after_sequence=3))),
        asyncio.create_task(drain(journal.subscribe_all())),
    ]
    await caught_up.wait()
    await journal.close()
    results = await asyncio.wait_for(asyncio.gather(*readers), 10)
    assert results == [None, [], []]  # every iteration simply finished
    assert seqs(seen) == [1, 2, 3]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(StoreClosed):
        journal.subscribe("s")


async def test_closing_a_subscription_ends_its_iteration(make_journal: JournalFactory) -> None:
    journal = await make_journal().open()
    sub = journal.subscribe("s")
    reader = asyncio.create_task(drain(sub))
    await asyncio.sleep(0)
    await sub.aclose()
    assert await asyncio.wait_for(reader, 10) == []
    assert sub.closed
    await journal.record("s", "message")
    assert [e async for e in sub] == []


async def test_subscribe_all_filters_and_survives_overflow(make_journal: JournalFactory) -> None:
    journal = await make_journal(buffer=4).open()
    sub = journal.subscribe_all(kinds=["tool_call", "tool_result"], session_ids=["a", "b"])
    writes: list[EventRecord] = []
    kinds = ["message", "tool_call", "tool_result"]
    for n in range(300):
        for session in ("a", "b", "c"):
            writes.append(await journal.record(session, kinds[n % 3], {"n": n}))
        if n % 50 == 0:
            await journal.create_branch("a", f"fork-{n}")
            writes.append(await journal.record("a", "tool_call", {"n": n}, branch_id=f"fork-{n}"))
    wanted = [e for e in writes if e.session_id in "ab" and e.kind != "message"]
    got = await take(sub, len(wanted))
    assert sub.statistics().dropped > 0  # the buffer of 4 overflowed many times
    by_branch: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event in got:
        by_branch[event.session_id, event.branch_id].append(event.event_id)
    expected: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event in wanted:
        expected[event.session_id, event.branch_id].append(event.event_id)
    assert by_branch == expected  # each branch complete, in order, no duplicate
    extra = await journal.record("a", "tool_call")
    assert await take(sub, 1) == [extra]
    await sub.aclose()


async def test_backlog_larger_than_any_page_is_replayed_whole(
    make_journal: JournalFactory,
) -> None:
    journal = await make_journal().open()
    await fill(journal, "big", 25_000)
    async with journal.subscribe("big") as sub:
        got = await take(sub, 25_000)
        assert seqs(got) == list(range(1, 25_001))
        live = await journal.record("big", "message")
        assert await take(sub, 1) == [live]


async def test_subscription_pages_backlog_and_live_across_a_small_page() -> None:
    # A page size of 3 puts many page boundaries into a short history.
    from stream import BranchSubscription

    async with EventJournal(MemoryEventStore()) as journal:
        await fill(journal, "s", 10)
        sub = BranchSubscription(journal.store, journal.hub, "s", after_sequence=2, page_size=3)
        assert seqs(await take(sub, 8)) == list(range(3, 11))
        await journal.record("s", "message")
        assert seqs(await take(sub, 1)) == [11]
        sub.close()


@pytest.mark.parametrize("store_factory", ["postgres"], indirect=True)
async def test_events_of_another_process_arrive_live(store_factory: StoreFactory) -> None:
    # Two stores over one database stand for two processes: only the watch
    # task can bring the other one's events to these subscribers.
    async with (
        EventJournal(store_factory()) as here,
        EventJournal(store_factory()) as there,
        here.subscribe("s") as sub,
        here.subscribe_all(kinds=["remote"]) as remote,
    ):
        local = await here.record("s", "local")
        assert await take(sub, 1) == [local]
        seen = asyncio.Event()
        written: list[EventRecord] = []

        async def other_process() -> None:
            # Until the listener is up a notification can be missed; the
            # next one makes the subscriber re-read the gap.
            while not seen.is_set() or len(written) < 5:
                written.append(await there.record("s", "remote", {"n": len(written)}))
                await asyncio.sleep(0.01)

        writer = asyncio.create_task(other_process())
        first = await take(sub, 1)
        seen.set()
        await writer
        got = first + await take(sub, len(written) - 1)
        assert [e.event_id for e in got] == [e.event_id for e in written]
        assert seqs(got) == list(range(2, len(written) + 2))
        (heard,) = await take(remote, 1)
        assert heard.event_id in {e.event_id for e in written}
