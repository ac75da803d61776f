"""The global feed, live: one pump per journal and resumable feed subscriptions.

A :class:`FeedPump` turns the store's commits into *contiguous feed ranges*:
``(prev, records)`` says "these are every visible record with ``prev <
position <= records[-1].position``". It takes a commit's records as they are
when they continue the last range (the memory and file stores number
positions without gaps), and otherwise reads the range with ``read_feed``
(PostgreSQL, whose positions may have gaps, or whatever it missed).

A :class:`FeedSubscription` keeps ``covered``: every record at or below it was
delivered or filtered out. A range that starts at or below ``covered``
continues it; one that starts above leaves a gap, which the subscription
reads from the store (``read_feed(after=covered)``), as it does for its
backlog and when its bounded buffer overflowed. The store's no-skip rule
makes the seam exact: a record never becomes visible below one already read.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from eventstore import EventRecord, EventStore, EventStoreError, check_identifier
from eventstore._snapshot import Snapshot

from ._hub import ReceiverStatistics, frozen_names
from ._subscription import Subscription

__all__ = ("FeedPump", "FeedSubscription")

logger = logging.getLogger("stream")

#: Records per ``read_feed`` while catching up.
PAGE_SIZE = 1000


@dataclass(eq=False, slots=True)
class FeedState:
    """One feed subscriber as the pump sees it (public fields, this module only)."""

    kinds: frozenset[str] | None
    sessions: frozenset[str] | None
    max: int
    #: Ranges not yet consumed: ``(prev, end, matching records)``, kept as
    #: snapshots shared by every subscriber and thawed per delivery.
    ranges: deque[tuple[int, int, list[Snapshot]]] = field(default_factory=deque)
    buffered: int = 0
    received: int = 0
    dropped: int = 0
    lagged: bool = False
    ended: bool = False
    waiter: asyncio.Future[None] | None = None

    def offer(self, prev: int, end: int, records: Sequence[Snapshot]) -> None:
        if self.ended or self.lagged:
            return
        kinds, sessions = self.kinds, self.sessions
        if kinds is None and sessions is None:
            matching = list(records)  # the snapshots are shared, the list is not
        else:
            matching = [
                r
                for r in records
                if (kinds is None or r.kind in kinds)
                and (sessions is None or r.session_id in sessions)
            ]
        if not matching and self.ranges and prev <= self.ranges[-1][1]:
            # Nothing to deliver and no gap to report: extend the last range.
            last_prev, _, last_records = self.ranges[-1]
            self.ranges[-1] = (last_prev, end, last_records)
            return
        if self.buffered + len(matching) > self.max:
            # Bounded memory: forget the buffer, re-read from the store instead.
            self.lagged = True
            self.dropped += self.buffered + len(matching)
            self.ranges.clear()
            self.buffered = 0
        else:
            self.ranges.append((prev, end, matching))
            self.buffered += len(matching)
        self.wake()

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class FeedPump:
    """Publishes the store's feed, in position order, to :class:`FeedSubscription` s.

    Feed it every commit with :meth:`committed` (a journal registers one store
    listener that does). It follows the feed only while it has subscribers.

    :param store: the store whose feed it follows.
    :param page_size: records per ``read_feed`` when it has to read.
    """

    def __init__(self, store: EventStore, *, page_size: int = PAGE_SIZE) -> None:
        self._store = store
        self._page_size = page_size
        self._subscribers: dict[FeedState, None] = {}
        #: Every visible record up to here was published; ``None``: not following.
        self._position: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading = False
        self._dirty = False
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def store(self) -> EventStore:
        """The store whose feed it follows."""
        return self._store

    @property
    def position(self) -> int | None:
        """The feed position published so far (``None`` while not following)."""
        return None if self._reading or self._dirty else self._position

    def committed(self, records: Sequence[EventRecord]) -> None:
        """Records that just became visible, in position order (a store listener's call)."""
        if not self._subscribers or not records:
            return
        last = self._position
        if last is not None and not self._reading and not self._dirty:
            fresh = (
                [r for r in records if r.position > last]
                if records[0].position <= last
                else records
            )
            if not fresh:
                return
            if (
                fresh[0].position == last + 1
                and fresh[-1].position - fresh[0].position == len(fresh) - 1
            ):
                self._publish(last, fresh)
                return
        self._dirty = True
        self._start()

    def attach(self, state: FeedState) -> None:
        self._subscribers[state] = None
        self._start()

    def detach(self, state: FeedState) -> None:
        self._subscribers.pop(state, None)
        if not self._subscribers:
            self._position = None
            self._wake.set()

    def close(self) -> None:
        """Stop following; every subscription ends once it delivered what it holds."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        for state in list(self._subscribers):
            state.ended = True
            state.wake()
        self._subscribers.clear()

    def _publish(self, prev: int, records: Sequence[EventRecord]) -> None:
        end = self._position = records[-1].position
        # One snapshot per record for every subscriber: nobody shares a payload.
        kept = [Snapshot.freeze(record, flat=True) for record in records]
        for state in self._subscribers:
            state.offer(prev, end, kept)

    def wake(self) -> None:
        """Make sure the pump runs (a subscriber needs it); cheap when it does."""
        self._start()

    def _start(self) -> None:
        self._wake.set()
        if self._task is not None or self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the subscriber's first read starts it
        self._task = asyncio.create_task(self._run(), name="eventjournal-feed")

    async def _run(self) -> None:
        try:
            while self._subscribers and not self._closed:
                self._wake.clear()
                self._reading = True
                self._dirty = False
                try:
                    if self._position is None:
                        self._position = head = await self._store.feed_head()
                        # Contiguous from here on: a subscriber below it reads the gap.
                        for state in self._subscribers:
                            state.offer(head, head, ())
                    start = self._position
                    page = await self._store.read_feed(start, self._page_size)
                finally:
                    self._reading = False
                if self._position != start:
                    # Every subscriber left during the read (``detach`` forgot the
                    # position) and new ones may have joined: start over at the head.
                    continue
                if page and self._subscribers:
                    self._publish(start, page)
                if len(page) == self._page_size or self._dirty:
                    continue
                await self._wake.wait()
        except (EventStoreError, OSError) as exc:
            # The subscribers read the store themselves and report the error.
            logger.warning("the feed pump stopped: %s", exc)
            self._position = None
            for state in self._subscribers:
                state.lagged = True
                state.wake()
        finally:
            if self._task is asyncio.current_task():
                self._task = None


class FeedSubscription(Subscription):
    """Every feed record with ``position > after``, filtered: backlog, then live.

    In position order, each once, whatever the live side does: a gap or an
    overflow of its bounded buffer is read from the store. :attr:`position`
    is where to resume: subscribe again with ``after=sub.position``.

    :param after: deliver positions above this one (0: everything).
    :param kinds: only records of these kinds (default: all).
    :param session_ids: only records of these sessions (default: all).
    :param buffer: live records it holds at most before it re-reads instead.
    :raises ValueError: for a negative or non-int ``after``, or a bad ``buffer``.
    :raises TypeError: for ``kinds`` that are not non-empty strings.
    :raises InvalidIdentifier: for a bad session id.
    """

    def __init__(
        self,
        pump: FeedPump,
        after: int,
        *,
        kinds: Iterable[str] | None = None,
        session_ids: Iterable[str] | None = None,
        buffer: int = 1024,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if type(after) is not int or after < 0:
            raise ValueError(f"after must be an int >= 0, got {after!r}")
        if type(buffer) is not int or buffer < 1:
            raise ValueError(f"buffer must be an int >= 1, got {buffer!r}")
        if type(page_size) is not int or page_size < 1:
            raise ValueError(f"page_size must be an int >= 1, got {page_size!r}")
        kind_set = frozen_names(kinds, "kinds")
        session_set = frozen_names(session_ids, "session_ids")
        for session_id in session_set or ():
            check_identifier(session_id, "session_id")
        self._pump = pump
        self._state = FeedState(kind_set, session_set, buffer)
        self._page_size = page_size
        self._covered = after
        self._last = after
        self._pending: deque[EventRecord] = deque()
        self._catching_up = True
        self._closed = False
        # Attach first, read second: whatever the read misses arrives live.
        pump.attach(self._state)

    @property
    def position(self) -> int:
        """The feed position delivered up to (``after`` before the first record)."""
        return self._last if self._pending else self._covered

    @property
    def closed(self) -> bool:
        """Whether it was closed, or its journal was."""
        return self._closed or self._state.ended

    async def __anext__(self) -> EventRecord:
        """The next record.

        :raises StopAsyncIteration: once closed, or once the journal closed
            and everything already in memory was delivered.
        :raises EventStoreError: if reading the store failed (iterate again to retry).
        """
        state = self._state
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._pending:
                record = self._pending.popleft()
                self._last = record.position
                state.received += 1
                return record
            if state.lagged:
                state.lagged = False
                self._catching_up = True
            if self._catching_up and not state.ended:
                await self._catch_up()
                continue
            if state.ranges:
                prev, end, records = state.ranges.popleft()
                state.buffered -= len(records)
                if prev > self._covered:
                    self._catching_up = True  # a gap: the store has it
                    continue
                covered = self._covered
                self._pending.extend(r.thaw() for r in records if r.position > covered)
                self._covered = max(covered, end)
                continue
            if state.ended:
                self.close()
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            state.waiter = waiter
            await waiter

    async def _catch_up(self) -> None:
        state = self._state
        pump = self._pump
        pump.wake()
        # Everything at or below what the pump published was visible before this read.
        published = pump.position
        try:
            page = await pump.store.read_feed(
                self._covered, self._page_size, kinds=state.kinds, session_ids=state.sessions
            )
        except EventStoreError:
            if self._closed or state.ended:
                return  # the journal closed the store under us: the end, not an error
            raise
        if self._closed:
            return
        covered = self._covered
        fresh = [r for r in page if r.position > covered]
        self._pending.extend(fresh)
        if fresh:
            covered = fresh[-1].position
        if len(page) < self._page_size:
            self._catching_up = False
            if published is not None:
                covered = max(covered, published)
        self._covered = covered

    def statistics(self) -> ReceiverStatistics:
        """The live buffer's statistics (``dropped``: live records re-read instead)."""
        state = self._state
        return ReceiverStatistics(
            current_buffer_used=state.buffered,
            max_buffer_size=state.max,
            received=state.received,
            dropped=state.dropped,
            lagged=state.lagged,
        )

    def close(self) -> None:
        """Stop: leave the pump, forget buffered records; iteration ends. Idempotent."""
        self._closed = True
        self._pending.clear()
        self._pump.detach(self._state)
        self._state.ranges.clear()
        self._state.wake()

    def __del__(self) -> None:
        state = self.__dict__.get("_state")
        if state is not None and not self.__dict__.get("_closed", True):
            self._pump.detach(state)

    def __repr__(self) -> str:
        return f"<FeedSubscription position={self.position}>"
