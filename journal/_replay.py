"""Deterministic replay: re-run an agent against a session it recorded.

The agent takes every step through an :class:`AgentRun`:

``await run.record(kind, data)``
    a step the agent decides itself: a message, a tool call, a plan.
``await run.call(kind, key, fn)``
    a step whose outcome comes from outside: ``fn()`` computes it (a tool, a
    model), ``key`` says what was asked (tool name and arguments, the prompt).

:func:`record_run` stores each step as one event (a call's result is its
``data``, its key ``metadata["call_key"]``). :func:`replay` walks a recorded
branch instead and compares each step with the record at the same place; a
call of a kind in ``serve`` gets the recorded result and its ``fn`` is never
called. The first step that differs is the :class:`Divergence`. From there the
agent runs live: on a branch forked just before the divergence when
``fork_on_divergence`` names one (the new behaviour is recorded there, the
original stays as it was), else unrecorded.

Steps are taken one at a time, in the order the agent starts them: tool calls
gathered concurrently are executed, and recorded, one after the other.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import msgspec

from eventstore import MAIN, EventRecord, InvalidEvent
from eventstore._json import decode, encode

from ._journal import EventJournal
from ._typed import JournalError

__all__ = (
    "CALL_KEY",
    "AgentRun",
    "Divergence",
    "ReplayDiverged",
    "ReplayStep",
    "record_run",
    "replay",
)

T = TypeVar("T")

#: The metadata field holding a call's key.
CALL_KEY = "call_key"


class ReplayStep(msgspec.Struct, frozen=True):
    """What the agent did at a step.

    :ivar action: ``"record"``, ``"call"``, or ``"end"`` (it finished).
    :ivar kind: the step's kind (``None`` for ``"end"``).
    :ivar data: a record's payload; a call's result if it was executed, else ``None``.
    :ivar key: a call's key.
    """

    action: Literal["record", "call", "end"]
    kind: str | None = None
    data: Any = None
    key: Any = None


class Divergence(msgspec.Struct, frozen=True):
    """The first step at which a replayed agent departed from its recording.

    :ivar sequence: where, in the replayed branch; a fork is made at ``sequence - 1``.
    :ivar recorded: the record at that sequence (``None``: the recording had ended).
    :ivar actual: what the agent did instead.
    """

    sequence: int
    recorded: EventRecord | None
    actual: ReplayStep


class ReplayDiverged(JournalError, AssertionError):
    """A replay run with ``stop_on_divergence=True`` met a step unlike its record.

    An :class:`AssertionError` too, so a test that replays an agent fails with it.
    """

    def __init__(self, session_id: str, branch_id: str, divergence: Divergence) -> None:
        self.session_id = session_id
        self.branch_id = branch_id
        self.divergence = divergence
        super().__init__(f"{session_id}/{branch_id}#{divergence.sequence}: {_explain(divergence)}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.session_id, self.branch_id, self.divergence))


def _describe(step: ReplayStep | EventRecord | None) -> str:
    if step is None:
        return "nothing (the recording ends)"
    if isinstance(step, EventRecord):
        if CALL_KEY in step.metadata:
            return f"call {step.kind!r} {step.metadata[CALL_KEY]!r} -> {step.data!r}"
        return f"record {step.kind!r} {step.data!r}"
    if step.action == "end":
        return "nothing (it finished)"
    if step.action == "call":
        return f"call {step.kind!r} {step.key!r}" + (
            "" if step.data is None else f" -> {step.data!r}"
        )
    return f"record {step.kind!r} {step.data!r}"


def _explain(divergence: Divergence) -> str:
    return (
        f"recorded {_describe(divergence.recorded)}, the agent did {_describe(divergence.actual)}"
    )


def _as_json(value: Any, what: str) -> Any:
    """``value`` as it reads back from any store, so live and replayed runs see the same."""
    try:
        return decode(encode(value))
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidEvent(f"{what} is not plain JSON: {exc}") from exc


class AgentRun:
    """The steps of one agent run: recorded, or replayed against a recording.

    Made by :func:`record_run` and :func:`replay`; use it as an async context
    manager. Its counters tell what happened: :attr:`served` calls answered
    from the recording, :attr:`executed` calls whose ``fn`` ran.
    """

    def __init__(
        self,
        journal: EventJournal,
        session_id: str,
        branch_id: str,
        *,
        replaying: bool,
        serve: Iterable[str] | None = None,
        skip: Iterable[str] = (),
        fork_on_divergence: str | None = None,
        stop_on_divergence: bool = False,
    ) -> None:
        self._journal = journal
        self._session_id = session_id
        self._source = branch_id
        self._branch: str | None = branch_id
        self._replaying = replaying
        self._serve = None if serve is None else frozenset(serve)
        self._skip = frozenset(skip)
        self._fork = fork_on_divergence
        self._stop = stop_on_divergence
        self._recording: list[EventRecord] = []
        self._cursor = 0
        self._sequence = 0
        self._lock = asyncio.Lock()
        self._entered = False
        self.divergence: Divergence | None = None
        self.served = 0
        self.executed = 0

    @property
    def session_id(self) -> str:
        """The session the run belongs to."""
        return self._session_id

    @property
    def branch_id(self) -> str:
        """The branch the run follows: the replayed one, then the fork if one was made."""
        return self._source if self._branch is None else self._branch

    @property
    def replaying(self) -> bool:
        """Whether every step so far matched the recording (``False`` for a recording run)."""
        return self._replaying

    @property
    def storing(self) -> bool:
        """Whether new steps are stored (a recording run, or a replay after its fork)."""
        return not self._replaying and self._branch is not None

    @property
    def sequence(self) -> int:
        """The sequence of the last step in :attr:`branch_id` (the fork point before any)."""
        return self._sequence

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("an AgentRun can be entered once")
        self._entered = True
        journal, session, branch = self._journal, self._session_id, self._source
        if self._replaying:
            self._recording = await journal.read(session, branch)
        else:
            self._sequence = await journal.head(session, branch)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            async with self._lock:
                if self._replaying and (recorded := self._peek()) is not None:
                    await self._diverge(recorded, ReplayStep("end"))

    def _check_entered(self) -> None:
        if not self._entered:
            raise RuntimeError("use the run as `async with replay(...) as run:`")

    # -- steps -----------------------------------------------------------------

    async def record(
        self, kind: str, data: Any = None, *, metadata: dict[str, Any] | None = None
    ) -> EventRecord:
        """Take a step the agent decided: store it, or check it against the recording.

        :returns: the stored record (while replaying, the recorded one; after a
            divergence without a fork, a record that is not stored: ``position`` 0).
        :raises ReplayDiverged: with ``stop_on_divergence``, if the step differs.
        :raises InvalidEvent: for an empty kind or a payload that is not plain JSON.
        :raises BranchExists: if the ``fork_on_divergence`` branch exists already.
        :raises SequenceConflict: if another writer appended to the run's branch.
        :raises BranchClosed, StorageError, StoreClosed: as :meth:`EventJournal.record`.
        """
        self._check_entered()
        data = _as_json(data, "data")
        async with self._lock:
            if self._replaying:
                recorded = self._peek()
                if recorded is not None and recorded.kind == kind and recorded.data == data:
                    return self._advance(recorded)
                await self._diverge(recorded, ReplayStep("record", kind, data))
            return await self._write(kind, data, metadata)

    async def call(
        self,
        kind: str,
        key: Any,
        fn: Callable[[], Awaitable[T] | T],
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        """Take a step whose outcome ``fn()`` computes; ``key`` says what was asked.

        Replaying, a recorded call of the same kind and key is answered from the
        recording when ``kind`` is served, without calling ``fn``; a kind not
        served is executed and its result compared with the recorded one. A
        recording run, or a replay past its divergence, calls ``fn`` and stores
        its result (``data``) with the key (``metadata["call_key"]``).

        An exception from ``fn`` propagates and nothing is stored: turn failures
        the agent should meet again on replay into results (as agent frameworks
        hand tool errors back to the model). ``fn`` runs while the run holds
        its step lock: it must not take steps through the same run.

        :returns: the result as it reads back from the store (plain JSON: a tuple
            comes back as a list), the same whether served or executed.
        :raises ReplayDiverged: with ``stop_on_divergence``, if the step differs
            (``fn`` is then not called for a served kind).
        :raises InvalidEvent: if ``key`` or the result is not plain JSON.
        :raises BranchExists, SequenceConflict, BranchClosed, StorageError,
            StoreClosed: as :meth:`record`.
        """
        self._check_entered()
        key = _as_json(key, "key")
        stored = {**(metadata or {}), CALL_KEY: key}
        async with self._lock:
            if self._replaying:
                recorded = self._peek()
                if recorded is None or not _same_call(recorded, kind, key):
                    await self._diverge(recorded, ReplayStep("call", kind, None, key))
                elif self._serve is None or kind in self._serve:
                    self.served += 1
                    return self._advance(recorded).data
                else:
                    result = await self._execute(fn)
                    if result == recorded.data:
                        return self._advance(recorded).data
                    await self._diverge(recorded, ReplayStep("call", kind, result, key))
                    await self._write(kind, result, stored)
                    return result
            result = await self._execute(fn)
            await self._write(kind, result, stored)
            return result

    # -- internals -------------------------------------------------------------

    def _peek(self) -> EventRecord | None:
        while self._cursor < len(self._recording):
            record = self._recording[self._cursor]
            if record.kind not in self._skip:
                return record
            self._cursor += 1
        return None

    def _advance(self, record: EventRecord) -> EventRecord:
        self._cursor += 1
        self._sequence = record.sequence
        return record

    async def _execute(self, fn: Callable[[], Awaitable[T] | T]) -> Any:
        value = fn()
        if inspect.isawaitable(value):
            value = await value
        self.executed += 1
        return _as_json(value, "the result")

    async def _diverge(self, recorded: EventRecord | None, actual: ReplayStep) -> None:
        end = self._recording[-1].sequence if self._recording else 0
        sequence = end + 1 if recorded is None else recorded.sequence
        self.divergence = Divergence(sequence, recorded, actual)
        self._replaying = False
        self._sequence = sequence - 1
        if self._stop:
            self._branch = None
            raise ReplayDiverged(self._session_id, self._source, self.divergence)
        if self._fork is None:
            self._branch = None
            return
        await self._journal.create_branch(
            self._session_id, self._fork, from_branch=self._source, fork_sequence=sequence - 1
        )
        self._branch = self._fork

    async def _write(self, kind: str, data: Any, metadata: dict[str, Any] | None) -> EventRecord:
        if self._branch is None:
            self._sequence += 1
            return EventRecord.new(
                self._session_id, self._source, self._sequence, kind, data, metadata=metadata
            )
        record = await self._journal.record(
            self._session_id,
            kind,
            data,
            branch_id=self._branch,
            metadata=metadata,
            expected_sequence=self._sequence,
        )
        self._sequence = record.sequence
        return record

    def __repr__(self) -> str:
        state = "replaying" if self._replaying else "recording" if self.storing else "live"
        return f"<AgentRun {self._session_id}/{self.branch_id}#{self._sequence} {state}>"


def _same_call(record: EventRecord, kind: str, key: Any) -> bool:
    return record.kind == kind and CALL_KEY in record.metadata and record.metadata[CALL_KEY] == key


def record_run(journal: EventJournal, session_id: str, *, branch_id: str = MAIN) -> AgentRun:
    """A run that stores every step after the branch's head, for :func:`replay` later::

        async with record_run(journal, "chat-1") as run:
            await agent(run)

    Writes are optimistic: another writer on the branch makes the next step
    raise :class:`~eventstore.SequenceConflict` rather than interleave.

    :raises InvalidIdentifier: on entry, for a bad id.
    :raises StoreClosed: on entry, if the journal is closed.
    """
    return AgentRun(journal, session_id, branch_id, replaying=False)


def replay(
    journal: EventJournal,
    session_id: str,
    *,
    branch_id: str = MAIN,
    serve: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    fork_on_divergence: str | None = None,
    stop_on_divergence: bool = False,
) -> AgentRun:
    """A run that replays the recorded branch: served results, the first divergence found::

        async with replay(journal, "chat-1", serve={"tool_result"},
                          fork_on_divergence="retry-1") as run:
            await agent(run)
        print(run.divergence)

    :param serve: the call kinds answered from the recording (default: every
        kind); calls of other kinds run live and their results are compared.
    :param skip: recorded kinds the agent does not produce through the run
        (written by something else); they are passed over, not compared.
    :param fork_on_divergence: a new branch forked from ``branch_id`` just
        before the divergence; the run goes on there, recorded. Without it the
        agent goes on live, and nothing more is stored.
    :param stop_on_divergence: raise :class:`ReplayDiverged` at the divergence
        (before anything runs live); for tests that the agent still replays.
    :raises InvalidIdentifier: on entry, for a bad id.
    :raises StoreClosed: on entry, if the journal is closed.
    """
    return AgentRun(
        journal,
        session_id,
        branch_id,
        replaying=True,
        serve=serve,
        skip=skip,
        fork_on_divergence=fork_on_divergence,
        stop_on_divergence=stop_on_divergence,
    )
