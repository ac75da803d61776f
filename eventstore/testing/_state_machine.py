"""``store_state_machine``: a Hypothesis rule-based machine for any :class:`EventStore`.

Every rule runs one store operation and the same operation on
:class:`~eventstore.testing._model.ReferenceModel`, then compares: results,
raised error types and error fields. Writes enter the model only after the
store acknowledged them, so "every acknowledged event survives" is checked on
every read, and after every simulated crash.

Persistent backends opt in to two more rules through keyword hooks:

``reopen(store) -> store``
    a new, unopened store over the same data as ``store`` (which is closed
    first). Enables the ``reopen`` rule.
``crash(store) -> Awaitable[None]``
    stop the open ``store`` and leave behind what a killed process leaves:
    bytes that were never acknowledged (a torn last line, a half-written temp
    file). In-process, acknowledged bytes already sit in the OS page cache, so
    the hook may stop the store with ``close()``; the damage is what matters.
    Afterwards the object must hold no resources and warn about nothing. The
    machine then calls ``reopen`` and compares everything with the model: every
    acknowledged event survived, and nothing else appeared. Enables the
    ``crash`` rule (needs ``reopen``).
``damage_lines(store, session_id, branch_id, index, how) -> undo``
    damage stored events of the closed ``store`` (a line twice, two swapped,
    one of another session or branch: :data:`LINE_DAMAGE`). The machine
    reopens and checks that reads over the damage raise ``CorruptLog`` and
    the others return the model's history, then ``undo()`` restores the data.
    Enables the ``damage_lines`` rule (needs ``reopen``).
``damage_manifest(store, session_id, how) -> (lost_branch, undo) | None``
    damage a session's branch graph the way a hostile or lost file does
    (:data:`MANIFEST_DAMAGE`); reads over it must raise ``CorruptLog``.
    Enables the ``damage_manifest`` rule (needs ``reopen``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import aclosing
from datetime import timedelta
from typing import Any, TypeVar

import msgspec
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from .._base import EventStore
from .._errors import (
    BranchNotFound,
    CorruptLog,
    EventStoreError,
    InvalidEvent,
    InvalidIdentifier,
    SequenceConflict,
)
from .._ids import MAIN
from .._records import BranchInfo, EventRecord
from ._model import ErrorTypes, ReferenceModel
from ._strategies import hostile_identifiers, json_values

__all__ = ("store_state_machine",)

S = TypeVar("S", bound=EventStore)
T = TypeVar("T")

#: Small name pools make forks of forks, merges back and conflicts likely.
SESSIONS = ("s1", "A.b-9_")
BRANCHES = (MAIN, "b1", "b2", "b.3", "B-4")
KINDS = ("message", "tool_call", "tool_result", "note")

_sessions = st.sampled_from(SESSIONS)
_branches = st.sampled_from(BRANCHES)
_payloads = json_values(max_leaves=4)


def _same_info(info: BranchInfo, model: ReferenceModel, session_id: str, branch_id: str) -> None:
    branch = model.branch(session_id, branch_id)
    assert info.session_id == session_id and info.branch_id == branch_id, info
    if branch is None:
        assert (info.parent_branch, info.fork_sequence, info.head) == (None, 0, 0), info
        assert info.merged_into is None, info
        return
    closed = branch.closed or branch.merged_into is not None
    expected = (branch.parent, branch.fork, branch.head, branch.merged_into, closed)
    got = (info.parent_branch, info.fork_sequence, info.head, info.merged_into, info.closed)
    assert got == expected, f"{session_id}/{branch_id}: store says {got}, model {expected}"
    assert info.created_at.tzinfo is not None, info
    if branch.created_at is None:
        branch.created_at = info.created_at
    assert info.created_at == branch.created_at, f"created_at of {branch_id} changed: {info}"


class StoreMachine(RuleBasedStateMachine):
    """Drives one fresh store per example from one event loop per example."""

    factory: Callable[[], EventStore]
    reopen_hook: Callable[[Any], EventStore] | None = None
    crash_hook: Callable[[Any], Awaitable[None]] | None = None
    crash_in_flight = False
    damage_lines_hook: Callable[[Any, str, str, int, str], Callable[[], None]] | None = None
    damage_manifest_hook: Callable[[Any, str, str], ManifestDamage | None] | None = None

    def __init__(self) -> None:
        super().__init__()
        # One loop per example: stores may bind locks and pools to the loop that
        # opened them, and a fresh loop keeps examples independent.
        self._runner = asyncio.Runner()
        self.model = ReferenceModel()
        #: The feed poller's last position and what it saw: position -> event id.
        self.feed_last = 0
        self.feed_seen: dict[int, str] = {}
        try:
            self.store = type(self).factory()
            self.run(self.store.open())
        except BaseException:
            self._runner.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self._runner.close()

    def attempt(
        self, coro: Coroutine[Any, Any, T], allowed: ErrorTypes, label: str = ""
    ) -> T | None:
        """Run ``coro``; it must succeed when ``allowed`` is empty, else raise one of them."""
        try:
            result = self.run(coro)
        except EventStoreError as exc:
            if label:
                event(f"{label}: {type(exc).__name__}")
            assert allowed, f"unexpected {type(exc).__name__}: {exc}"
            assert isinstance(exc, tuple(allowed)), (
                f"raised {type(exc).__name__} ({exc}); expected one of "
                f"{sorted(e.__name__ for e in allowed)}"
            )
            return None
        assert not allowed, f"expected {sorted(e.__name__ for e in allowed)}, got {result!r}"
        if label:
            event(f"{label}: ok")
        return result

    # -- appends -------------------------------------------------------------------

    def new_record(self, session_id: str, branch_id: str, sequence: int, data: Any) -> EventRecord:
        return EventRecord.new(session_id, branch_id, sequence, KINDS[sequence % 4], data)

    def where(self, data: st.DataObject, label: str = "branch") -> tuple[str, str]:
        """A session and branch, mostly one that exists, so rules build on each other."""
        known = [(s, b) for s, branches in sorted(self.model.sessions.items()) for b in branches]
        # Only main is implicit: an unknown session's main is how sessions appear.
        anywhere = st.tuples(_sessions, st.just(MAIN) | _branches)
        pick = st.one_of(st.sampled_from(known), st.sampled_from(known), anywhere)
        return data.draw(pick if known else anywhere, label=label)

    def bounds(self, data: st.DataObject, head: int) -> tuple[int, int | None, int | None]:
        """``from_sequence``, ``to_sequence`` and ``limit`` around the branch's head."""
        near = st.integers(0, head + 2)
        start = data.draw(near, label="from_sequence")
        end = data.draw(st.none() | near, label="to_sequence")
        limit = data.draw(st.none() | near, label="limit")
        return start, end, limit

    @rule(data=st.data(), payload=_payloads)
    def append_next(self, data: st.DataObject, payload: Any) -> None:
        session, branch = self.where(data)
        record = self.new_record(session, branch, self.model.head(session, branch) + 1, payload)
        allowed = self.model.append_errors(session, branch)
        stored = self.attempt(self.store.append(record), allowed)
        if stored is not None:
            assert _unpositioned(stored) == record, (stored, record)
            self.model.appended([stored])

    @rule(data=st.data(), back=st.integers(0, 6), gap=st.integers(2, 4))
    def append_wrong_sequence(self, data: st.DataObject, back: int, gap: int) -> None:
        session, branch = self.where(data)
        head = self.model.head(session, branch)
        sequence = head - back if head - back >= 1 else head + gap
        record = self.new_record(session, branch, sequence, None)
        try:
            self.run(self.store.append(record))
        except SequenceConflict as exc:
            assert (exc.session_id, exc.branch_id) == (session, branch), exc
            assert (exc.expected, exc.actual) == (head + 1, sequence), exc
            assert f"expected {head + 1}, got {sequence}" in str(exc), exc
        except EventStoreError as exc:
            # Which check a closed or unknown branch fails first is the backend's choice.
            assert self.model.append_errors(session, branch), f"unexpected {exc!r}"
        else:
            raise AssertionError(f"append at {sequence} over head {head} was accepted")

    @rule(data=st.data(), writers=st.integers(2, 4))
    def race(self, data: st.DataObject, writers: int) -> None:
        """Concurrent writers of the same next sequence: exactly one wins."""
        session, branch = self.where(data)
        if self.model.append_errors(session, branch):
            return
        sequence = self.model.head(session, branch) + 1
        records = [
            self.new_record(session, branch, sequence, {"writer": n}) for n in range(writers)
        ]
        results = self.run(_gather([self.store.append(r) for r in records]))
        winners = [r for r in results if isinstance(r, EventRecord)]
        losers = [r for r in results if isinstance(r, SequenceConflict)]
        assert len(winners) == 1 and len(losers) == writers - 1, (
            f"race: {len(winners)} of {writers} writers of one sequence was accepted",
            results,
        )
        assert _unpositioned(winners[0]) in records, winners
        self.model.appended(winners)

    @rule(data=st.data(), items=st.lists(_payloads, min_size=1, max_size=4))
    def append_batch(self, data: st.DataObject, items: list[Any]) -> None:
        session, branch = self.where(data)
        first = self.model.head(session, branch) + 1
        batch = [self.new_record(session, branch, first + n, d) for n, d in enumerate(items)]
        allowed = self.model.append_errors(session, branch)
        stored = self.attempt(self.store.append_batch(batch), allowed)
        if stored is not None:
            assert [_unpositioned(r) for r in stored] == batch, (stored, batch)
            self.model.appended(stored)

    @rule(
        data=st.data(),
        flaw=st.sampled_from(["empty", "gap", "mixed", "duplicate-id", "stale", "half-retry"]),
    )
    def append_bad_batch(self, data: st.DataObject, flaw: str) -> None:
        session, branch = self.where(data)
        head = self.model.head(session, branch)
        first = self.new_record(session, branch, head + 1, None)
        allowed: ErrorTypes = frozenset({InvalidEvent})
        batch: list[EventRecord]
        if flaw == "empty":
            batch = []
        elif flaw == "gap":
            batch = [first, self.new_record(session, branch, head + 3, None)]
        elif flaw == "mixed":
            other = "b1" if branch != "b1" else "b2"
            batch = [first, self.new_record(session, other, head + 2, None)]
        elif flaw == "duplicate-id":
            twin = EventRecord(session, branch, head + 2, "note", event_id=first.event_id)
            batch = [first, twin]
        else:
            # "stale" restarts at the head; "half-retry" resends the last stored
            # record with a new one: neither may write anything.
            own = self.model.branch(session, branch)
            if head == 0 or own is None:
                return
            last = own.own[-1] if flaw == "half-retry" and own.own else None
            start = last if last is not None else self.new_record(session, branch, head, None)
            batch = [start, first]
            if last is None:
                allowed = frozenset({SequenceConflict}) | self.model.append_errors(session, branch)
        self.attempt(self.store.append_batch(batch), allowed)

    @rule(data=st.data())
    def retry_acknowledged(self, data: st.DataObject) -> None:
        # A no-op rather than a precondition: preconditions make Hypothesis
        # redraw rules, and early in a program this one is rarely enabled.
        acknowledged = self.model.own_events()
        if not acknowledged:
            return
        session, branch, own = data.draw(st.sampled_from(acknowledged))
        lo = data.draw(st.integers(0, len(own) - 1))
        hi = data.draw(st.integers(lo + 1, min(len(own), lo + 3)))
        batch = own[lo:hi]
        if len(batch) == 1 and data.draw(st.booleans()):
            # A stored id with other content is another event reusing it, refused;
            # at a later sequence (a retry at the new head) it is the same write.
            changed = EventRecord(**{**_fields(batch[0]), "data": {"changed": batch[0].data}})
            self.attempt(self.store.append(changed), frozenset({InvalidEvent}))
            later = EventRecord(**{**_fields(batch[0]), "sequence": batch[0].sequence + 7})
            assert self.run(self.store.append(later)) == batch[0], "retry at another sequence"
        else:
            assert self.run(self.store.append_batch(batch)) == batch, "batch retry"
        assert self.run(self.store.head(session, branch)) == self.model.head(session, branch)

    # -- branches ------------------------------------------------------------------

    @rule(data=st.data(), branch=_branches)
    def fork(self, data: st.DataObject, branch: str) -> None:
        session, parent = self.where(data, "parent")
        head = self.model.head(session, parent)
        at = data.draw(st.none() | st.integers(0, head + 2), label="fork_sequence")
        allowed = self.model.fork_errors(session, branch, parent, at)
        info = self.attempt(
            self.store.create_branch(session, branch, from_branch=parent, fork_sequence=at),
            allowed,
            "fork",
        )
        if info is None:
            return
        fork_at = head if at is None else at
        self.model.forked(session, branch, parent, fork_at, info.created_at)
        _same_info(info, self.model, session, branch)

    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        session, source = self.where(data, "source")
        known = sorted(self.model.sessions.get(session, {}))
        target = data.draw(st.sampled_from(known) | _branches if known else _branches, "target")
        allowed = self.model.merge_errors(session, source, target)
        own = self.model.branch(session, source)
        originals = [] if own is None else list(own.own)
        old_head = self.model.head(session, target)
        result = self.attempt(self.store.merge_branch(session, source, target), allowed, "merge")
        if result is None:
            return
        new_head = old_head + len(originals)
        assert (result.source_branch, result.target_branch) == (source, target), result
        assert (result.merged_events, result.target_head) == (len(originals), new_head), result
        merged = self.run(self.store.read(session, target, old_head + 1)) if originals else []
        self.check_merged(merged, originals, target, old_head)
        self.model.merged(session, source, target, merged)

    def check_merged(
        self, merged: list[EventRecord], originals: list[EventRecord], target: str, head: int
    ) -> None:
        assert len(merged) == len(originals), _diff("merged", merged, originals)
        known = {r.event_id for _, _, own in self.model.own_events() for r in own}
        for n, (new, old) in enumerate(zip(merged, originals, strict=True), start=head + 1):
            provenance = {"branch_id": old.branch_id, "sequence": old.sequence}
            provenance["event_id"] = old.event_id
            expected = {**old.metadata, "merged_from": provenance}
            assert (new.session_id, new.branch_id, new.sequence) == (old.session_id, target, n)
            assert (new.kind, new.data, new.metadata) == (old.kind, old.data, expected), new
            assert new.event_id not in known, f"merge reused event id {new.event_id}"
            known.add(new.event_id)

    # -- reads ---------------------------------------------------------------------

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        session, branch = self.where(data)
        start, end, limit = self.bounds(data, self.model.head(session, branch))
        got = self.run(self.store.read(session, branch, start, limit, to_sequence=end))
        expected = self.model.window(session, branch, max(start, 1), end, limit)
        assert got == expected, _diff("read", got, expected)

    @rule(data=st.data(), take=st.none() | st.integers(0, 6))
    def iter_events(self, data: st.DataObject, take: int | None) -> None:
        session, branch = self.where(data)
        start, end, limit = self.bounds(data, self.model.head(session, branch))
        events = self.store.iter_events(session, branch, start, limit, to_sequence=end)
        got = self.run(_collect(events, take))
        expected = self.model.window(session, branch, max(start, 1), end, limit)
        expected = expected if take is None else expected[:take]
        assert got == expected, _diff("iter_events", got, expected)

    @rule(data=st.data(), page=st.integers(1, 4))
    def catch_up(self, data: st.DataObject, page: int) -> None:
        """Read the way a subscriber catches up: pages after the last sequence seen."""
        session, branch = self.where(data)
        after = data.draw(st.integers(0, self.model.head(session, branch) + 1), label="after")
        got: list[EventRecord] = []
        position = after
        while chunk := self.run(self.store.read(session, branch, position + 1, page)):
            got.extend(chunk)
            position = chunk[-1].sequence
        expected = self.model.window(session, branch, after + 1, None, None)
        assert got == expected, _diff("catch-up", got, expected)

    @rule(data=st.data())
    def head_and_info(self, data: st.DataObject) -> None:
        session, branch = self.where(data)
        head = self.run(self.store.head(session, branch))
        expected = self.model.head(session, branch)
        assert head == expected, f"head of {session}/{branch}: store {head}, model {expected}"
        if not self.model.exists(session, branch):
            self.attempt(self.store.branch_info(session, branch), _NOT_FOUND)
            return
        _same_info(self.run(self.store.branch_info(session, branch)), self.model, session, branch)

    @rule()
    def listings(self) -> None:
        sessions = self.run(self.store.list_sessions())
        assert sessions == sorted(self.model.sessions), (sessions, sorted(self.model.sessions))
        for session in (*SESSIONS, "never-used"):
            infos = self.run(self.store.list_branches(session))
            names = [i.branch_id for i in infos]
            assert names == sorted(self.model.sessions.get(session, {})), (session, names)
            for info in infos:
                _same_info(info, self.model, session, info.branch_id)

    # -- lifecycle -------------------------------------------------------------------

    @rule(
        data=st.data(),
        op=st.sampled_from(["close", "delete_branch", "delete_session", "expire", "sessions"]),
    )
    def lifecycle(self, data: st.DataObject, op: str) -> None:
        """One rule for all five, so the others keep their share of the steps."""
        if op == "close":
            self.close_branch(data)
        elif op == "delete_branch":
            self.delete_branch(data)
        elif op == "delete_session":
            self.delete_session(data.draw(_sessions, label="session"))
        elif op == "expire":
            self.expire(data.draw(st.booleans(), label="everything"))
        else:
            prefix = data.draw(st.sampled_from([None, "s", "A"]), label="prefix")
            self.sessions(prefix, data.draw(st.none() | st.integers(1, 3), label="limit"))

    def close_branch(self, data: st.DataObject) -> None:
        session, branch = self.where(data)
        allowed = frozenset() if self.model.exists(session, branch) else _NOT_FOUND
        info = self.attempt(self.store.close_branch(session, branch), allowed, "close")
        if info is None:
            return
        assert info.closed, info
        self.model.closed_branch(session, branch)
        _same_info(info, self.model, session, branch)

    def delete_branch(self, data: st.DataObject) -> None:
        session, branch = self.where(data)
        allowed = self.model.delete_branch_errors(session, branch)
        self.attempt(self.store.delete_branch(session, branch), allowed, "delete_branch")
        if not allowed:
            self.model.deleted_branch(session, branch)
            assert self.run(self.store.head(session, branch)) == 0
            assert self.run(self.store.read(session, branch)) == []

    def delete_session(self, session: str) -> None:
        existed = self.run(self.store.delete_session(session))
        assert existed == (session in self.model.sessions), (session, existed)
        self.model.sessions.pop(session, None)
        assert self.run(self.store.read(session)) == []
        assert self.run(self.store.list_branches(session)) == []

    def expire(self, everything: bool) -> None:
        idle_for = timedelta(0) if everything else timedelta(days=3650)
        deleted = self.run(self.store.expire(idle_for=idle_for))
        assert deleted == sorted(deleted), deleted
        assert set(deleted) <= set(self.model.sessions), deleted
        if not everything:
            assert deleted == [], deleted
        for session in deleted:
            del self.model.sessions[session]

    def sessions(self, prefix: str | None, limit: int | None) -> None:
        listed = []
        after: str | None = None
        while page := self.run(self.store.sessions(prefix=prefix, limit=limit, after=after)):
            listed.extend(page)
            after = page[-1].session_id
            if limit is None:
                break
        expected = [s for s in sorted(self.model.sessions) if s.startswith(prefix or "")]
        assert [i.session_id for i in listed] == expected, (listed, expected)
        if prefix is None:
            ids = self.run(self.store.list_sessions())
            assert ids == expected, ("list_sessions", ids, expected)
        for info in listed:
            assert (info.branches, info.events) == self.model.summary(info.session_id), info
            assert info.created_at <= info.last_activity, info

    @rule(
        name=hostile_identifiers(),
        op=st.sampled_from(["append", "branch", "read", "head", "fork", "merge", "list"]),
    )
    def hostile_identifier(self, name: str, op: str) -> None:
        calls: dict[str, Callable[[], Coroutine[Any, Any, object]]] = {
            "append": lambda: self.store.append(EventRecord(name, MAIN, 1, "note")),
            "branch": lambda: self.store.append(EventRecord("s1", name, 1, "note")),
            "read": lambda: self.store.read("s1", name),
            "head": lambda: self.store.head(name),
            "fork": lambda: self.store.create_branch("s1", name),
            "merge": lambda: self.store.merge_branch("s1", name, MAIN),
            "list": lambda: self.store.list_branches(name),
        }
        self.attempt(calls[op](), frozenset({InvalidIdentifier}))

    @rule(limit=st.none() | st.integers(1, 4))
    def poll_feed(self, limit: int | None) -> None:
        """Poll the feed as a consumer does, after the last position it saw.

        Nothing may be skipped: every acknowledged record at or below the
        poller's last position must have been returned by some poll.
        """
        got = self.run(self.store.read_feed(self.feed_last, limit))
        positions = [r.position for r in got]
        assert positions == sorted(set(positions)), f"feed out of order: {positions}"
        assert all(p > self.feed_last for p in positions), (self.feed_last, positions)
        if limit is not None:
            assert len(got) <= limit, (limit, positions)
        for record in got:
            self.feed_seen[record.position] = record.event_id
        if got:
            self.feed_last = got[-1].position
        for _, _, own in self.model.own_events():
            for record in own:
                if record.position <= self.feed_last:
                    assert self.feed_seen.get(record.position) == record.event_id, (
                        f"the feed poller skipped {record.session_id}/{record.branch_id}"
                        f"#{record.sequence} at position {record.position}"
                    )

    def check_feed(self) -> None:
        """The whole feed: every acknowledged record once, by position; the feed head."""
        stored = [r for _, _, own in self.model.own_events() for r in own]
        stored.sort(key=lambda r: r.position)
        positions = [r.position for r in stored]
        assert all(p >= 1 for p in positions), f"a stored record without a position: {positions}"
        assert len(set(positions)) == len(positions), f"positions reused: {positions}"
        feed = self.run(self.store.read_feed())
        assert feed == stored, _diff("feed", feed, stored)
        head = self.run(self.store.feed_head())
        assert head == (positions[-1] if positions else 0), (head, positions[-1:])

    @rule()
    def check_everything(self) -> None:
        """Every branch of every session: history, head and info; the feed."""
        for session, branches in sorted(self.model.sessions.items()):
            for branch in sorted(branches):
                got = self.run(self.store.read(session, branch))
                expected = self.model.history(session, branch)
                assert got == expected, _diff(f"{session}/{branch}", got, expected)
                info = self.run(self.store.branch_info(session, branch))
                _same_info(info, self.model, session, branch)
        self.check_feed()


class ReopenRules(StoreMachine):
    """Rules for stores whose data outlives the store object."""

    @rule()
    def reopen(self) -> None:
        assert self.reopen_hook is not None
        self.run(self.store.close())
        self.store = self.reopen_hook(self.store)
        self.run(self.store.open())
        self.check_everything()


class CrashRules(ReopenRules):
    """A crash keeps every acknowledged event: checked right after reopening.

    With ``in_flight`` (opt-in) a batch append is still running when the crash
    hits. It was never acknowledged, so after the reopen it may be there or not,
    but only whole: all of its events in order, or none, and nothing it left
    behind may trouble a later operation.
    """

    @rule(data=st.data(), in_flight=st.integers(0, 3))
    def crash(self, data: st.DataObject, in_flight: int) -> None:
        assert self.reopen_hook is not None and self.crash_hook is not None
        in_flight = in_flight if self.crash_in_flight else 0
        session, branch = self.where(data)
        head = self.model.head(session, branch)
        batch = [self.new_record(session, branch, head + 1 + n, None) for n in range(in_flight)]
        pending = None
        if batch and not self.model.append_errors(session, branch):
            pending = self.run(_start(self.store.append_batch(batch)))
        self.run(_wait(self.crash_hook(self.store)))
        if pending is not None:
            # Its outcome is unknown to the caller, as after a real crash.
            self.run(_wait(asyncio.gather(pending, return_exceptions=True)))
        self.store = self.reopen_hook(self.store)
        self.run(self.store.open())
        if pending is not None:
            self.settle_in_flight(session, branch, head, batch)
        self.check_everything()

    def settle_in_flight(
        self, session: str, branch: str, head: int, batch: list[EventRecord]
    ) -> None:
        after = self.run(self.store.head(session, branch))
        if after == head:
            event("crash: in-flight batch lost")
            return
        assert after == head + len(batch), f"torn batch: head {head} -> {after}, {len(batch)}"
        landed = self.run(self.store.read(session, branch, head + 1))
        assert [_unpositioned(r) for r in landed] == batch, _diff("in-flight batch", landed, batch)
        event("crash: in-flight batch kept")
        self.model.appended(landed)


#: How ``damage_lines`` damages a branch's own events, at index ``i``: the
#: event at ``i + 1`` replaced by a copy of ``i``; ``i`` and ``i + 1`` swapped;
#: ``i`` replaced by the same event under another session, or another branch.
LINE_DAMAGE = ("duplicate", "swap", "other-session", "other-branch")


class DamageRules(ReopenRules):
    """Damaged stored events are reported (:class:`CorruptLog`), never read as history."""

    @rule(data=st.data(), how=st.sampled_from(LINE_DAMAGE))
    def damage_lines(self, data: st.DataObject, how: str) -> None:
        assert self.reopen_hook is not None and self.damage_lines_hook is not None
        stored = [(s, b, own) for s, b, own in self.model.own_events() if len(own) >= 2]
        if not stored:
            return
        session, branch, own = data.draw(st.sampled_from(stored), label="damaged")
        index = data.draw(st.integers(0, len(own) - 2), label="index")
        hit = own[index + 1] if how == "duplicate" else own[index]
        self.run(self.store.close())
        undo = self.damage_lines_hook(self.store, session, branch, index, how)
        try:
            self.store = self.reopen_hook(self.store)
            self.run(self.store.open())
            self.check_damage_reported(hit)
        finally:
            self.run(self.store.close())
            undo()
        self.reopen()

    def check_damage_reported(self, hit: EventRecord) -> None:
        """Every history holding the damaged event fails; any other may, or reads right."""
        for session, branches in sorted(self.model.sessions.items()):
            for branch in sorted(branches):
                expected = self.model.history(session, branch)
                try:
                    got = self.run(self.store.read(session, branch))
                    head = self.run(self.store.head(session, branch))
                except CorruptLog:
                    event("damage: CorruptLog")
                    continue
                assert hit not in expected, f"{session}/{branch}: damage read without an error"
                assert got == expected, _diff(f"damaged {session}/{branch}", got, expected)
                assert head == self.model.head(session, branch), (session, branch, head)


#: How ``damage_manifest`` damages a session's branch graph: a branch id that
#: points out of the root, a parent cycle, the manifest deleted, or a branch
#: file the manifest knows held events deleted.
MANIFEST_DAMAGE = ("hostile-id", "parent-cycle", "lost-manifest", "lost-file")

#: What ``damage_manifest`` did: the branch whose events it lost (``None``: the
#: whole session's graph is damaged) and ``undo()``.
ManifestDamage = tuple[str | None, Callable[[], None]]


class ManifestDamageRules(ReopenRules):
    """A damaged or lost branch graph is reported (:class:`CorruptLog`), never read as empty."""

    @rule(data=st.data(), how=st.sampled_from(MANIFEST_DAMAGE))
    def damage_manifest(self, data: st.DataObject, how: str) -> None:
        assert self.reopen_hook is not None and self.damage_manifest_hook is not None
        if not self.model.sessions:
            return
        session = data.draw(st.sampled_from(sorted(self.model.sessions)), label="damaged")
        self.run(self.store.close())
        done = self.damage_manifest_hook(self.store, session, how)
        self.store = self.reopen_hook(self.store)
        self.run(self.store.open())
        if done is None:
            event(f"damage_manifest: {how} not applicable")
            return
        lost, undo = done
        try:
            self.check_graph_damage_reported(session, lost)
        finally:
            self.run(self.store.close())
            undo()
        self.reopen()

    def check_graph_damage_reported(self, damaged: str, lost: str | None) -> None:
        """Histories over the damage fail; other sessions read right."""
        for session, branches in sorted(self.model.sessions.items()):
            for branch in sorted(branches):
                expected = self.model.history(session, branch)
                hit = session == damaged and (
                    lost is None or any(r.branch_id == lost for r in expected)
                )
                try:
                    got = self.run(self.store.read(session, branch))
                    head = self.run(self.store.head(session, branch))
                except CorruptLog:
                    assert session == damaged, f"{session}/{branch}: CorruptLog, not damaged"
                    event("damage_manifest: CorruptLog")
                    continue
                assert not hit, f"{session}/{branch}: damaged branch graph read without an error"
                assert got == expected, _diff(f"{session}/{branch}", got, expected)
                assert head == self.model.head(session, branch), (session, branch, head)


_NOT_FOUND: ErrorTypes = frozenset({BranchNotFound})


async def _gather(coros: list[Coroutine[Any, Any, EventRecord]]) -> list[object]:
    return list(await asyncio.gather(*coros, return_exceptions=True))


async def _start(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start ``coro`` and let it run up to its first real wait."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0)
    return task


async def _wait(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _unpositioned(record: EventRecord) -> EventRecord:
    return msgspec.structs.replace(record, position=0)


def _fields(record: EventRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__struct_fields__}


async def _collect(events: AsyncIterator[EventRecord], take: int | None) -> list[EventRecord]:
    out: list[EventRecord] = []
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            if take is not None and len(out) >= take:
                break
            out.append(event)
    return out


def _diff(where: str, got: list[EventRecord], expected: list[EventRecord]) -> str:
    def brief(records: list[EventRecord]) -> list[tuple[str, int, str]]:
        return [(r.branch_id, r.sequence, r.event_id[-6:]) for r in records]

    return f"{where}: store returned {brief(got)}, model expects {brief(expected)}"


def store_state_machine(
    factory: Callable[[], S],
    *,
    reopen: Callable[[S], S] | None = None,
    crash: Callable[[S], Awaitable[None]] | None = None,
    in_flight: bool = False,
    damage_lines: Callable[[S, str, str, int, str], Callable[[], None]] | None = None,
    damage_manifest: Callable[[S, str, str], ManifestDamage | None] | None = None,
) -> type[RuleBasedStateMachine]:
    """A :class:`~hypothesis.stateful.RuleBasedStateMachine` checking a store against a model.

    ``factory()`` must return a fresh, unopened, empty store (the class
    :class:`~eventstore.MemoryEventStore` works). Each example builds one store
    and runs it on its own event loop, so run the machine from synchronous
    code: its ``TestCase`` attribute is a :class:`unittest.TestCase` that both
    unittest and pytest collect::

        TestMemoryStore = store_state_machine(MemoryEventStore).TestCase

    :param reopen: ``reopen(store)`` returns a new, unopened store over the data
        of the closed ``store``; adds a rule that closes and reopens.
    :param crash: ``await crash(store)`` stops the open store and leaves the
        unacknowledged bytes a killed process would (see the module docs);
        adds a rule that crashes, reopens (needs ``reopen``) and checks that
        every acknowledged event survived and nothing else appeared.

    Settings go on the test case, e.g. ``machine.TestCase.settings =
    settings(max_examples=500, stateful_step_count=30, print_blob=True)``.
    Each step's outcome is a Hypothesis ``event`` (``fork: ok``,
    ``merge: BranchClosed``...), shown by ``pytest --hypothesis-show-statistics``.
    :param in_flight: let the crash hit while a batch append is still running,
        and check it is then all or nothing. Where it lands depends on thread
        and I/O timing, so a failure found this way may not replay exactly
        (Hypothesis reports it as flaky): a bug-hunting mode, off by default.
    :param damage_lines: ``damage_lines(store, session_id, branch_id, index, how)``
        damages the stored own events of a branch of the closed ``store`` in
        one of the ways of :data:`LINE_DAMAGE`, and returns ``undo()``, which
        checks the store left the damage as it was and restores the data. Adds
        a rule that damages, reopens (needs ``reopen``), checks that every read
        over the damage raises :class:`~eventstore.CorruptLog` and every other
        returns the right history, then undoes it.
    :param damage_manifest: ``damage_manifest(store, session_id, how)`` damages
        the branch graph of a session of the closed ``store`` in one of the ways
        of :data:`MANIFEST_DAMAGE` and returns ``(lost_branch, undo)``
        (``lost_branch`` ``None`` when the whole graph is damaged), or ``None``
        if that damage cannot be told from an honest state here. Adds a rule
        that damages, reopens, checks that every read over the damage raises
        :class:`~eventstore.CorruptLog` (never an empty or partial history) and
        every other session reads right, then undoes it.
    :raises ValueError: if ``crash``, ``damage_lines`` or ``damage_manifest`` is given without
        ``reopen``, or ``in_flight`` without ``crash``.
    """
    if crash is not None and reopen is None:
        raise ValueError("crash needs reopen: the machine must reopen the store after a crash")
    if in_flight and crash is None:
        raise ValueError("in_flight needs crash: it is a way to crash")
    if damage_lines is not None and reopen is None:
        raise ValueError("damage_lines needs reopen: the damage is done to a closed store")
    if damage_manifest is not None and reopen is None:
        raise ValueError("damage_manifest needs reopen: the damage is done to a closed store")
    base: type[StoreMachine] = (
        CrashRules if crash is not None else ReopenRules if reopen is not None else StoreMachine
    )
    name = getattr(factory, "__name__", "")
    name = name if name.isidentifier() else "Store"
    namespace: dict[str, Any] = {
        "factory": staticmethod(factory),
        "reopen_hook": None if reopen is None else staticmethod(reopen),
        "crash_hook": None if crash is None else staticmethod(crash),
        "crash_in_flight": in_flight,
        "damage_lines_hook": None if damage_lines is None else staticmethod(damage_lines),
        "damage_manifest_hook": None if damage_manifest is None else staticmethod(damage_manifest),
        "__module__": __name__,
    }
    bases = (base,) if damage_lines is None else (DamageRules, base)
    if damage_manifest is not None:
        bases = (ManifestDamageRules, *bases)
    return type(f"{name}StateMachine", bases, namespace)
