"""Hypothesis strategies for agent transcripts: messages, tool calls, sessions, forks.

A transcript is a list of steps, ``(kind, data)`` pairs as
``journal.record_batch`` takes them. A turn is a user ``message``, then
``tool_call``/``tool_result`` pairs sharing ``data["id"]`` (a result is
``{"id", "ok"}`` or ``{"id", "error"}``), then the assistant's ``message``;
a run may close with ``session_end``. Every generated history passes
:func:`~eventstore.testing.check_agent_history`, so a property that fails
points at the code under test, and shrinks to few, short turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
from hypothesis import strategies as st

from .._ids import MAIN
from .._records import BranchInfo, EventRecord
from ._invariants import END, TOOL_CALL, TOOL_RESULT
from ._strategies import _META_TEXT, _json_values, identifiers

__all__ = (
    "AgentTranscript",
    "TranscriptFork",
    "TranscriptStep",
    "forked_transcripts",
    "interleaved_transcripts",
    "messages",
    "tool_exchanges",
    "transcripts",
    "write_transcript",
)

#: One step: ``(kind, data)``.
TranscriptStep = tuple[str, Any]

MESSAGE = "message"
_TOOLS = st.one_of(
    st.sampled_from(("search", "calculator", "weather", "read_file")), identifiers(max_size=12)
)
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
# Tool arguments become replay call keys, kept in metadata: no NUL there.
_ARGS = _json_values(_META_TEXT, 4)


class TranscriptFork(msgspec.Struct, frozen=True):
    """A branch of a generated session: forked from ``from_branch`` at ``fork_sequence``."""

    branch_id: str
    from_branch: str
    fork_sequence: int
    steps: tuple[TranscriptStep, ...]


class AgentTranscript(msgspec.Struct, frozen=True):
    """A generated session: ``main``'s steps, then forks, each after its parent."""

    session_id: str
    steps: tuple[TranscriptStep, ...]
    forks: tuple[TranscriptFork, ...] = ()

    def histories(self) -> dict[str, list[TranscriptStep]]:
        """Each branch's logical history: inherited steps up to its fork point, then its own."""
        found: dict[str, list[TranscriptStep]] = {MAIN: list(self.steps)}
        for fork in self.forks:
            found[fork.branch_id] = found[fork.from_branch][: fork.fork_sequence] + list(fork.steps)
        return found


def messages(*, roles: Sequence[str] = ("user", "assistant")) -> st.SearchStrategy[TranscriptStep]:
    """``("message", {"role": ..., "text": ...})`` steps."""
    return st.builds(_message, st.sampled_from(roles), _TEXT)


def _message(role: str, text: str) -> TranscriptStep:
    return (MESSAGE, {"role": role, "text": text})


def _exchange(
    call_id: str, tool: str, args: Any, outcome: dict[str, Any]
) -> tuple[TranscriptStep, TranscriptStep]:
    return (
        (TOOL_CALL, {"id": call_id, "tool": tool, "args": args}),
        (TOOL_RESULT, {"id": call_id, **outcome}),
    )


# Built once: a strategy made inside every draw is validated again each time.
_OUTCOMES = st.one_of(_ARGS.map(lambda v: {"ok": v}), _TEXT.map(lambda e: {"error": e}))
_CALLS = st.tuples(_TOOLS, _ARGS, _OUTCOMES)


def tool_exchanges(call_id: str) -> st.SearchStrategy[tuple[TranscriptStep, TranscriptStep]]:
    """A ``tool_call`` and its ``tool_result`` (a value, or an error), both with ``call_id``."""
    return _CALLS.map(lambda call: _exchange(call_id, *call))


@st.composite
def _turns(
    draw: st.DrawFn, prefix: str, min_turns: int, max_turns: int, max_tools: int
) -> list[list[TranscriptStep]]:
    turns: list[list[TranscriptStep]] = []
    calls = 0
    for _ in range(draw(st.integers(min_turns, max_turns))):
        turn = [_message("user", draw(_TEXT))]
        for _ in range(draw(st.integers(0, max_tools))):
            calls += 1
            turn.extend(_exchange(f"{prefix}{calls}", *draw(_CALLS)))
        turn.append(_message("assistant", draw(_TEXT)))
        turns.append(turn)
    return turns


def _ends(end: bool | None) -> st.SearchStrategy[bool]:
    return st.booleans() if end is None else st.just(end)


_END_STEP: TranscriptStep = (END, {"reason": "done"})


@st.composite
def transcripts(
    draw: st.DrawFn,
    *,
    min_turns: int = 1,
    max_turns: int = 4,
    max_tools: int = 3,
    end: bool | None = None,
) -> list[TranscriptStep]:
    """One agent run: turns of messages and answered tool calls.

    :param end: close with ``session_end`` always (``True``), never (``False``)
        or sometimes (``None``).
    """
    turns = draw(_turns("call-", min_turns, max_turns, max_tools))
    steps = [step for turn in turns for step in turn]
    if draw(_ends(end)):
        steps.append(_END_STEP)
    return steps


@st.composite
def interleaved_transcripts(
    draw: st.DrawFn, *, max_sessions: int = 3, max_turns: int = 3, max_tools: int = 2
) -> list[tuple[str, str, Any]]:
    """Steps of several sessions as they arrive together: ``(session_id, kind, data)``.

    Each session's steps keep their order; the sessions' ids are distinct.
    """
    ids = draw(st.lists(identifiers(max_size=16), min_size=1, max_size=max_sessions, unique=True))
    runs = [draw(transcripts(max_turns=max_turns, max_tools=max_tools)) for _ in ids]
    order = draw(st.permutations([index for index, run in enumerate(runs) for _ in run]))
    taken = [0] * len(runs)
    out: list[tuple[str, str, Any]] = []
    for index in order:
        kind, data = runs[index][taken[index]]
        taken[index] += 1
        out.append((ids[index], kind, data))
    return out


@st.composite
def forked_transcripts(
    draw: st.DrawFn,
    *,
    max_forks: int = 3,
    max_turns: int = 3,
    max_tools: int = 2,
    end: bool | None = None,
) -> AgentTranscript:
    """A session with forks (``fork-1``, ``fork-2``...) of ``main`` or of earlier forks.

    Forks are made between turns, never inside a tool exchange nor after an
    end, so each branch's history is a valid run of its own.
    """
    session_id = draw(identifiers(max_size=16))
    turns = draw(_turns(f"{MAIN}-", 1, max_turns, max_tools))
    steps = [step for turn in turns for step in turn]
    bounds: dict[str, list[int]] = {MAIN: _boundaries(0, turns)}
    if draw(_ends(end)):
        steps.append(_END_STEP)
    forks: list[TranscriptFork] = []
    for number in range(1, draw(st.integers(0, max_forks)) + 1):
        branch_id = f"fork-{number}"
        parent = draw(st.sampled_from(sorted(bounds)))
        point = draw(st.sampled_from(bounds[parent]))
        own_turns = draw(_turns(f"{branch_id}-", 0, max_turns, max_tools))
        own = [step for turn in own_turns for step in turn]
        bounds[branch_id] = [b for b in bounds[parent] if b < point] + _boundaries(point, own_turns)
        if draw(_ends(end)):
            own.append(_END_STEP)
        forks.append(TranscriptFork(branch_id, parent, point, tuple(own)))
    return AgentTranscript(session_id, tuple(steps), tuple(forks))


def _boundaries(start: int, turns: list[list[TranscriptStep]]) -> list[int]:
    out = [start]
    for turn in turns:
        out.append(out[-1] + len(turn))
    return out


class TranscriptWriter(Protocol):
    """What :func:`write_transcript` writes through: an ``EventStore`` or an ``EventJournal``."""

    async def append_batch(self, events: Sequence[EventRecord]) -> list[EventRecord]: ...

    async def create_branch(
        self,
        session_id: str,
        branch_id: str,
        *,
        from_branch: str = MAIN,
        fork_sequence: int | None = None,
    ) -> BranchInfo: ...


async def write_transcript(target: TranscriptWriter, transcript: AgentTranscript) -> None:
    """Store a generated session: ``main``'s steps, then each fork, one batch per branch.

    ``main`` must be empty; the branches must not exist.

    :raises SequenceConflict: if ``main`` already has events.
    :raises BranchExists: if a fork's branch exists.
    :raises StoreClosed: if the target is closed.
    """
    session_id = transcript.session_id
    await _append(target, session_id, MAIN, 0, transcript.steps)
    for fork in transcript.forks:
        await target.create_branch(
            session_id,
            fork.branch_id,
            from_branch=fork.from_branch,
            fork_sequence=fork.fork_sequence,
        )
        await _append(target, session_id, fork.branch_id, fork.fork_sequence, fork.steps)


async def _append(
    target: TranscriptWriter,
    session_id: str,
    branch_id: str,
    head: int,
    steps: Sequence[TranscriptStep],
) -> None:
    if steps:
        await target.append_batch(
            [
                EventRecord.new(session_id, branch_id, head + offset, kind, data)
                for offset, (kind, data) in enumerate(steps, start=1)
            ]
        )
