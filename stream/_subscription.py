"""Catch-up subscriptions: the store's history first, then the hub's live events.

The invariant every subscription keeps: register with the hub *before* reading
the store. An event is stored before it is published, so whatever the backlog
read misses is already on its way through the receiver, and whatever the
receiver misses (a full buffer) is in the store. Between the two, a delivered
position tells what to skip and what to re-read.

State changes only between awaits and never while a store read is pending, so
cancelling a consumer loses nothing: the next ``__anext__`` re-reads.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from typing import Self

from eventstore import (
    MAIN,
    BranchNotFound,
    EventRecord,
    EventStore,
    EventStoreError,
    check_identifier,
)

from ._closable import SyncClosable
from ._hub import (
    _CLOSED,
    _ENDED,
    _OPEN,
    EventReceiver,
    EventStreamHub,
    Key,
    ReceiverStatistics,
    frozen_names,
    receiver_state,
)

__all__ = ("AllSubscription", "BranchSubscription", "Subscription")

#: Records per store read while catching up.
PAGE_SIZE = 1000
#: Seconds an idle subscription of a store other processes change (a read-only
#: file store, PostgreSQL) waits before it asks the store whether its branch was
#: closed or its session deleted there: no commit announces those.
ELSEWHERE_CHECK = 1.0

#: Per-branch recovery marks an :class:`AllSubscription` keeps at most.
_MAX_MARKS = 10_000


def _check_page_size(page_size: object) -> None:
    if type(page_size) is not int or page_size < 1:
        raise ValueError(f"page_size must be an int >= 1, got {page_size!r}")


class Subscription(SyncClosable, ABC):
    """An async iterator of events that is also an async context manager.

    ``async with journal.subscribe(...) as sub: async for event in sub: ...``.
    Iteration ends when the subscription is closed (:meth:`aclose`) or its hub
    is closed; events already buffered in memory are delivered first in the
    latter case. A subscription that is garbage collected unclosed leaves its
    hub quietly.

    Every event it yields is the subscriber's own: backlog events are fresh
    store reads and live ones a copy per receiver (see :mod:`stream._hub`), so
    mutating one changes nothing another subscriber, reader or writer sees.
    """

    def __aiter__(self) -> Self:
        return self

    @abstractmethod
    async def __anext__(self) -> EventRecord:
        """The next event.

        :raises StopAsyncIteration: once closed, or once the hub closed and
            everything already in memory was delivered.
        :raises EventStoreError: if reading the store failed (the subscription
            stays usable: iterate again to retry).
        """

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether it or its source was closed (what is buffered still comes)."""

    @abstractmethod
    def statistics(self) -> ReceiverStatistics:
        """The live buffer's statistics."""

    @abstractmethod
    def close(self) -> None:
        """Stop: forget buffered events; iteration ends. Idempotent."""


class _HubSubscription(Subscription):
    """A subscription fed by one hub receiver, catching up from the store."""

    def __init__(self, store: EventStore, receiver: EventReceiver, page_size: int) -> None:
        self._store = store
        self._page_size = page_size
        # Keeping the public receiver means it leaves the hub when we are collected.
        self._handle = receiver
        self._receiver = receiver_state(receiver)
        self._pending: deque[EventRecord] = deque()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether it or its hub was closed (after a hub close, what is buffered still comes)."""
        return self._closed or self._handle.closed

    def statistics(self) -> ReceiverStatistics:
        """The live buffer's statistics."""
        return self._handle.statistics()

    def close(self) -> None:
        """Stop: leave the hub, forget buffered events; iteration ends. Idempotent."""
        self._closed = True
        self._pending.clear()
        self._handle.close()

    def _stop(self) -> StopAsyncIteration:
        self.close()
        return StopAsyncIteration()

    async def _read(self, key: Key, start: int, limit: int) -> list[EventRecord] | None:
        """Read from the store, or ``None`` if the subscription ended meanwhile.

        :raises EventStoreError: if the read failed while the hub is still open.
        """
        try:
            page = await self._store.read(key[0], key[1], start, limit)
        except EventStoreError:
            if self._handle.closed or self._closed:
                # The journal closed the store under us: that is the end, not an error.
                return None
            raise
        return None if self._closed else page


class BranchSubscription(_HubSubscription):
    """Every event of one branch's logical history after ``after_sequence``, then live.

    On a fork the inherited events come first, as the store reads them. The
    events are yielded in sequence order, each exactly once, however the live
    ones arrive: a duplicate is skipped, a gap or a lagged buffer is re-read
    from the store. The backlog is paged, never capped.

    Iteration ends once the branch's last event was delivered if the branch is
    closed (or merged): found so when catching up, or announced by the hub
    (:meth:`EventStreamHub.end_branch`). It ends at once when its session is
    deleted.

    :param after_sequence: deliver sequences above this one (0: everything).
    :param kinds: deliver only events of these kinds (default: all); the
        others are skipped before delivery, the order and the seam stay exact.
    :param page_size: records per store read while catching up.
    :raises InvalidIdentifier: for a bad id.
    :raises ValueError: for a negative ``after_sequence`` or a ``page_size`` below 1.
    :raises TypeError: for ``kinds`` that are not non-empty strings.
    :raises anyio.ClosedResourceError: if the hub was closed.
    """

    def __init__(
        self,
        store: EventStore,
        hub: EventStreamHub,
        session_id: str,
        branch_id: str = MAIN,
        after_sequence: int = 0,
        *,
        kinds: Iterable[str] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if type(after_sequence) is not int or after_sequence < 0:
            raise ValueError(f"after_sequence must be an int >= 0, got {after_sequence!r}")
        _check_page_size(page_size)
        self._kinds = frozen_names(kinds, "kinds")
        check_identifier(session_id, "session_id")
        check_identifier(branch_id, "branch_id")
        # Registering first is what makes the seam exact; see the module docstring.
        super().__init__(store, hub.subscribe(session_id, branch_id), page_size)
        self._key = (session_id, branch_id)
        self._last = after_sequence
        self._catching_up = True
        #: The branch takes no more events: end once caught up with the store.
        self._final = False
        #: Other processes may close or delete the branch: ask the store when idle.
        self._elsewhere = bool(getattr(store, "read_only", False) or store.shared_writers)

    @property
    def session_id(self) -> str:
        return self._key[0]

    @property
    def branch_id(self) -> str:
        return self._key[1]

    @property
    def position(self) -> int:
        """The last sequence delivered (``after_sequence`` before the first one).

        Resubscribing with ``after_sequence=position`` resumes exactly here.
        """
        return self._last

    async def __anext__(self) -> EventRecord:
        receiver = self._receiver
        queue = receiver.queue
        # The live fast path: the next event is buffered, in order, and nothing is
        # pending, lost or to re-read (a buffered event also means not closed).
        if (
            queue
            and not self._pending
            and not self._catching_up
            and self._kinds is None
            and not receiver.losses
            and queue[0].sequence == self._last + 1
        ):
            live = queue.popleft()
            receiver.popped += 1
            self._last = live.sequence
            return live.thaw()
        while True:
            if self._closed or receiver.state == _CLOSED:
                # Closed by us, or dropped by the hub: the session was deleted.
                raise self._stop()
            if self._pending:
                event = self._pending.popleft()
                self._last = event.sequence
                if self._kinds is not None and event.kind not in self._kinds:
                    continue
                return event
            if receiver.losses:
                # Whatever was dropped is in the store after our position.
                receiver.take_losses()
                self._catching_up = True
            if self._catching_up:
                if (self._handle.closed and not self._ending()) or not await self._catch_up():
                    raise self._stop()
                continue
            queue = receiver.queue
            if not queue:
                if receiver.state != _OPEN:
                    if self._ending() and not self._final:
                        # Ended by the hub: what the buffer lacks is in the store.
                        self._final = self._catching_up = True
                        continue
                    raise self._stop()
                if self._final:
                    raise self._stop()
                waiter = receiver.waiter()
                if waiter is None:
                    continue
                if not self._elsewhere:
                    await waiter
                    continue
                done, _ = await asyncio.wait((waiter,), timeout=ELSEWHERE_CHECK)
                if not done and await self._ended_elsewhere():
                    # What the buffer lacks is in the store (nothing, if it was deleted).
                    self._final = self._catching_up = True
                continue
            receiver.popped += 1
            live = queue.popleft()
            sequence = live.sequence
            if sequence == self._last + 1:
                self._last = sequence
                if self._kinds is not None and live.kind not in self._kinds:
                    continue
                return live.thaw()
            if sequence > self._last:
                # Publishers raced: the store has the gap (and this event).
                self._catching_up = True

    def _ending(self) -> bool:
        """Whether the hub, still open, ended this branch's live events (see ``end_branch``)."""
        receiver = self._receiver
        return receiver.state == _ENDED and not receiver.hub.closed

    async def _catch_up(self) -> bool:
        page = await self._read(self._key, self._last + 1, self._page_size)
        if page is None:
            return False
        if page and page[0].sequence != self._last + 1:
            return True  # another task moved us on during the read; read again
        done = len(page) < self._page_size
        # Caught up: a branch closed already (or elsewhere) sends nothing more.
        closed = done and not self._final and await self._branch_closed()
        if self._closed:
            return False
        # No await from here: a cancelled consumer finds the state as it was.
        self._pending.extend(page)
        if done:
            self._catching_up = False
            self._final = self._final or closed
        return True

    async def _branch_closed(self) -> bool:
        try:
            info = await self._store.branch_info(*self._key)
        except EventStoreError:
            return False  # not there (yet): it may be created, so wait for it
        return info.closed

    async def _ended_elsewhere(self) -> bool:
        """Whether another process closed the branch or deleted it (or its session)."""
        try:
            info = await self._store.branch_info(*self._key)
        except BranchNotFound:
            return self._last > 0  # it had events: deleted, not yet created
        except EventStoreError:
            return False
        return info.closed or info.head < self._last

    def __repr__(self) -> str:
        return f"<BranchSubscription {self._key[0]}/{self._key[1]} position={self._last}>"


class AllSubscription(_HubSubscription):
    """Live events of every session and branch, filtered by kind and session.

    There is no global order. Per session and branch, events arrive in the
    order they were published (sequence order for one journal), each once:
    when the live buffer overflows, the lost ranges are re-read from the store
    after the events buffered before them, and their later live copies skipped.

    :param kinds: only these kinds (default: all).
    :param session_ids: only these sessions (default: all).
    :param page_size: records per store read while recovering a loss.
    :raises InvalidIdentifier: for a bad session id.
    :raises ValueError: for a ``page_size`` below 1.
    :raises anyio.ClosedResourceError: if the hub was closed.
    """

    def __init__(
        self,
        store: EventStore,
        hub: EventStreamHub,
        *,
        kinds: Iterable[str] | None = None,
        session_ids: Iterable[str] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        _check_page_size(page_size)
        super().__init__(store, hub.subscribe_all(kinds=kinds, session_ids=session_ids), page_size)
        self._kinds = frozen_names(kinds, "kinds")
        # Ranges still to re-read: [key, next sequence].
        self._recovering: deque[tuple[Key, int]] = deque()
        # key -> last sequence re-read from the store; live copies up to it are stale.
        self._marks: dict[Key, int] = {}

    async def __anext__(self) -> EventRecord:
        receiver = self._receiver
        while True:
            if self._closed or receiver.state == _CLOSED:
                # Closed by us, or dropped by the hub: the session was deleted.
                raise self._stop()
            if self._pending:
                return self._pending.popleft()
            if self._recovering:
                if self._handle.closed or not await self._recover():
                    raise self._stop()
                continue
            for key, lost in receiver.take_losses(due_only=True):
                self._recovering.append((key, max(lost, self._marks.get(key, 0) + 1)))
            if self._recovering:
                continue
            event = receiver.pop()
            if event is None:
                if self._handle.closed:
                    raise self._stop()
                waiter = receiver.waiter()
                if waiter is not None:
                    await waiter
                continue
            if self._marks:
                mark = self._marks.get((event.session_id, event.branch_id))
                if mark is not None and event.sequence <= mark:
                    continue
            return event.thaw()

    async def _recover(self) -> bool:
        key, start = self._recovering[0]
        page = await self._read(key, start, self._page_size)
        if page is None:
            return False
        if not self._recovering or self._recovering[0] != (key, start):
            return True  # another task advanced the recovery during the read
        if len(page) < self._page_size:
            self._recovering.popleft()
        else:
            self._recovering[0] = (key, page[-1].sequence + 1)
        if not page:
            return True
        kinds = self._kinds
        self._pending.extend(e for e in page if kinds is None or e.kind in kinds)
        self._marks.pop(key, None)
        self._marks[key] = page[-1].sequence
        if len(self._marks) > _MAX_MARKS:
            # Oldest first: its stale live copies are long consumed.
            del self._marks[next(iter(self._marks))]
        return True

    def __repr__(self) -> str:
        kinds = sorted(self._kinds) if self._kinds is not None else "all"
        return f"<AllSubscription kinds={kinds} recovering={len(self._recovering)}>"
