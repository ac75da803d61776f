"""Invariants of an agent's history, for properties over generated runs.

Each ``check_*`` takes one branch's logical history (what ``read`` returns)
and raises :class:`InvariantViolation` naming the invariant and the first
sequence that breaks it. :func:`check_session` applies the agent-loop ones to
every branch of a session at once.

The kinds are the conventions the transcript strategies generate
(``message``, ``tool_call``/``tool_result`` paired by ``data["id"]``,
``session_end``); every check takes other names as keywords.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from .._ids import MAIN
from .._records import BranchInfo, EventRecord

__all__ = (
    "END",
    "TOOL_CALL",
    "TOOL_RESULT",
    "HistorySource",
    "InvariantViolation",
    "branch_histories",
    "check_agent_history",
    "check_contiguous",
    "check_fold",
    "check_nothing_after_end",
    "check_session",
    "check_tool_calls_answered",
)

S = TypeVar("S")


class HistorySource(Protocol):
    """What the session-wide checks read from: an :class:`EventStore` or an ``EventJournal``."""

    async def list_branches(self, session_id: str) -> list[BranchInfo]: ...

    async def read(
        self,
        session_id: str,
        branch_id: str = MAIN,
        from_sequence: int = 1,
        limit: int | None = None,
        *,
        to_sequence: int | None = None,
    ) -> list[EventRecord]: ...


TOOL_CALL = "tool_call"
TOOL_RESULT = "tool_result"
END = "session_end"


class InvariantViolation(AssertionError):
    """A history breaks an invariant; an :class:`AssertionError`, so a property fails.

    :ivar invariant: which one (``"contiguous"``, ``"tool calls answered"``...).
    :ivar session_id: the history's session (``None`` for an empty history).
    :ivar branch_id: the branch the offending record was written on.
    :ivar sequence: the first sequence that breaks it (``None``: the history as a whole).
    :ivar detail: what is wrong.
    """

    def __init__(
        self,
        invariant: str,
        session_id: str | None,
        branch_id: str | None,
        sequence: int | None,
        detail: str,
    ) -> None:
        self.invariant = invariant
        self.session_id = session_id
        self.branch_id = branch_id
        self.sequence = sequence
        self.detail = detail
        where = "" if session_id is None else f" at {session_id}/{branch_id}"
        at = "" if sequence is None else f"#{sequence}"
        super().__init__(f"{invariant} violated{where}{at}: {detail}")

    def __reduce__(self) -> tuple[object, ...]:
        args = (self.invariant, self.session_id, self.branch_id, self.sequence, self.detail)
        return (type(self), args)


def _fail(invariant: str, record: EventRecord | None, detail: str) -> InvariantViolation:
    if record is None:
        return InvariantViolation(invariant, None, None, None, detail)
    return InvariantViolation(
        invariant, record.session_id, record.branch_id, record.sequence, detail
    )


def check_contiguous(history: Sequence[EventRecord]) -> None:
    """Sequences run ``1, 2, 3...`` without gap or repeat, all of one session.

    :raises InvariantViolation: at the first record out of place.
    """
    for expected, record in enumerate(history, start=1):
        if record.sequence != expected:
            raise _fail("contiguous", record, f"expected sequence {expected}")
        if record.session_id != history[0].session_id:
            raise _fail("contiguous", record, f"not of session {history[0].session_id!r}")


def _call_id(record: EventRecord, id_field: str) -> Any:
    data = record.data
    if not isinstance(data, dict) or id_field not in data:
        raise _fail("tool calls answered", record, f"{record.kind} without data[{id_field!r}]")
    return data[id_field]


def check_tool_calls_answered(
    history: Sequence[EventRecord],
    *,
    call: str = TOOL_CALL,
    result: str = TOOL_RESULT,
    id_field: str = "id",
    allow_pending: bool = False,
) -> None:
    """Every call gets exactly one result after it; no result lacks its call.

    :param allow_pending: accept calls still unanswered at the end (a run
        stopped mid-step); a second result or an orphan still fails.
    :raises InvariantViolation: at the first result without its call, the
        first repeated call id or result, or (the history as a whole) the
        calls left unanswered.
    """
    pending: dict[Any, EventRecord] = {}
    answered: set[Any] = set()
    for record in history:
        if record.kind == call:
            call_id = _call_id(record, id_field)
            if call_id in pending or call_id in answered:
                raise _fail("tool calls answered", record, f"call id {call_id!r} used twice")
            pending[call_id] = record
        elif record.kind == result:
            call_id = _call_id(record, id_field)
            if call_id in answered:
                raise _fail("tool calls answered", record, f"a second result for {call_id!r}")
            if pending.pop(call_id, None) is None:
                raise _fail("tool calls answered", record, f"a result for no call ({call_id!r})")
            answered.add(call_id)
    if pending and not allow_pending:
        first = next(iter(pending.values()))
        ids = sorted(map(repr, pending))
        raise _fail("tool calls answered", first, f"calls never answered: {', '.join(ids)}")


def check_nothing_after_end(history: Sequence[EventRecord], *, end: str = END) -> None:
    """No record follows the session's end event (and there is at most one).

    :raises InvariantViolation: at the first record after the end.
    """
    for index, record in enumerate(history):
        if record.kind == end and index + 1 < len(history):
            after = history[index + 1]
            raise _fail("nothing after end", after, f"{after.kind!r} after {end!r}")


def check_fold(
    history: Sequence[EventRecord],
    reducer: Callable[[S, EventRecord], S],
    initial: S,
    expected: S,
    *,
    states: Sequence[S] | None = None,
) -> None:
    """Folding the stored history gives the state the agent kept as it went.

    :param expected: the agent's final state.
    :param states: the agent's state after each step (one per record); when
        given, the first step whose fold differs is named.
    :raises InvariantViolation: where the fold and the agent's state part.
    """
    if states is not None and len(states) != len(history):
        raise _fail("fold equals state", None, f"{len(states)} states, {len(history)} records")
    state = initial
    for index, record in enumerate(history):
        state = reducer(state, record)
        if states is not None and state != states[index]:
            raise _fail("fold equals state", record, f"fold {state!r} != {states[index]!r}")
    if state != expected:
        last = history[-1] if history else None
        raise _fail("fold equals state", last, f"fold {state!r} != {expected!r}")


def check_agent_history(
    history: Sequence[EventRecord],
    *,
    call: str = TOOL_CALL,
    result: str = TOOL_RESULT,
    id_field: str = "id",
    end: str = END,
    allow_pending: bool = False,
) -> None:
    """The agent-loop invariants at once: contiguous, calls answered, nothing after end.

    :func:`check_contiguous`, :func:`check_tool_calls_answered`, then
    :func:`check_nothing_after_end`.

    :raises InvariantViolation: from the first that fails.
    """
    check_contiguous(history)
    check_tool_calls_answered(
        history, call=call, result=result, id_field=id_field, allow_pending=allow_pending
    )
    check_nothing_after_end(history, end=end)


async def branch_histories(store: HistorySource, session_id: str) -> dict[str, list[EventRecord]]:
    """Every branch's logical history (inherited records first), by branch id.

    :raises InvalidIdentifier: for a bad id.
    :raises StoreClosed: if the store is closed.
    """
    return {
        info.branch_id: await store.read(session_id, info.branch_id)
        for info in await store.list_branches(session_id)
    }


async def check_session(store: HistorySource, session_id: str, **kinds: Any) -> None:
    """:func:`check_agent_history` on every branch of the session.

    :param kinds: ``call``, ``result``, ``id_field``, ``end``, ``allow_pending``.
    :raises InvariantViolation: for the first branch (by id) that breaks one.
    :raises InvalidIdentifier, StoreClosed: as :func:`branch_histories`.
    """
    for history in (await branch_histories(store, session_id)).values():
        check_agent_history(history, **kinds)
