"""The agent-loop kit: transcript strategies, invariant checks, fresh stores under ``@given``.

Every ``@given`` test here runs with Hypothesis's default health checks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from eventstore import EventRecord
from eventstore.testing import (
    AgentTranscript,
    InvariantViolation,
    branch_histories,
    check_agent_history,
    check_contiguous,
    check_fold,
    check_nothing_after_end,
    check_session,
    check_tool_calls_answered,
    forked_transcripts,
    fresh_file_store,
    fresh_store,
    interleaved_transcripts,
    transcripts,
    write_transcript,
)
from journal import AgentRun, record_run
from journal.testing import assert_replays, fresh_journal

few = settings(max_examples=25, deadline=None)


def history(*steps: tuple[str, Any], session: str = "s") -> list[EventRecord]:
    return [EventRecord.new(session, "main", n, k, d) for n, (k, d) in enumerate(steps, 1)]


# -- strategies: every generated history is a valid agent run ------------------


@few
@given(transcripts())
async def test_transcripts_pass_the_invariants_on_a_fresh_store(steps: list[Any]) -> None:
    async with fresh_store() as store:
        assert await store.list_sessions() == []
        await write_transcript(store, AgentTranscript("s", tuple(steps)))
        await check_session(store, "s")
        assert [(r.kind, r.data) for r in await store.read("s")] == steps


@few
@given(forked_transcripts())
async def test_forked_transcripts_on_a_fresh_file_store(transcript: AgentTranscript) -> None:
    async with fresh_file_store() as store:
        await write_transcript(store, transcript)
        await check_session(store, transcript.session_id)
        found = await branch_histories(store, transcript.session_id)
        expected = transcript.histories()
        assert {b: [(r.kind, r.data) for r in h] for b, h in found.items()} == expected


@few
@given(interleaved_transcripts())
async def test_interleaved_sessions_through_a_fresh_journal(steps: list[Any]) -> None:
    async with fresh_journal() as journal:
        for session_id, kind, data in steps:
            await journal.record(session_id, kind, data)
        sessions = {session_id for session_id, _, _ in steps}
        assert set(await journal.list_sessions()) == sessions
        for session_id in sessions:
            await check_session(journal, session_id)


@given(st.integers(0, 3))
def test_fresh_store_in_a_sync_given_test(n: int) -> None:
    async def body() -> int:
        async with fresh_store() as store:
            for sequence in range(1, n + 1):
                await store.append(EventRecord.new("s", "main", sequence, "step"))
            return await store.head("s")

    assert asyncio.run(body()) == n


# -- invariants: each catches its violation and names where ---------------------

CALL = ("tool_call", {"id": "c1", "tool": "t"})
RESULT = ("tool_result", {"id": "c1", "ok": 1})


def test_contiguous() -> None:
    good = history(("a", 1), ("b", 2))
    check_contiguous(good)
    gap = [good[0], EventRecord.new("s", "main", 3, "c")]
    with pytest.raises(InvariantViolation) as caught:
        check_contiguous(gap)
    assert (caught.value.invariant, caught.value.sequence) == ("contiguous", 3)
    assert "s/main#3" in str(caught.value)
    with pytest.raises(InvariantViolation, match="not of session"):
        check_contiguous([good[0], EventRecord.new("other", "main", 2, "c")])


def test_tool_calls_answered() -> None:
    check_tool_calls_answered(history(CALL, RESULT))
    with pytest.raises(InvariantViolation, match="never answered") as caught:
        check_tool_calls_answered(history(("message", None), CALL))
    assert caught.value.sequence == 2
    check_tool_calls_answered(history(CALL), allow_pending=True)
    with pytest.raises(InvariantViolation, match="a result for no call"):
        check_tool_calls_answered(history(RESULT, CALL))
    with pytest.raises(InvariantViolation, match="a second result"):
        check_tool_calls_answered(history(CALL, RESULT, RESULT))
    with pytest.raises(InvariantViolation, match="used twice"):
        check_tool_calls_answered(history(CALL, CALL))
    with pytest.raises(InvariantViolation, match="without data"):
        check_tool_calls_answered(history(("tool_call", "no id")))
    check_tool_calls_answered(
        history(("call", {"ref": 1}), ("answer", {"ref": 1})),
        call="call",
        result="answer",
        id_field="ref",
    )


def test_nothing_after_end() -> None:
    check_nothing_after_end(history(("message", 1), ("session_end", None)))
    with pytest.raises(InvariantViolation, match="'message' after 'session_end'") as caught:
        check_agent_history(history(("session_end", None), ("message", 1)))
    assert caught.value.sequence == 2


def test_fold_equals_the_incremental_state() -> None:
    steps = history(("add", 1), ("add", 2), ("add", 3))

    def total(state: int, record: EventRecord) -> int:
        return state + record.data

    check_fold(steps, total, 0, 6, states=[1, 3, 6])
    with pytest.raises(InvariantViolation, match="fold 6 != 7"):
        check_fold(steps, total, 0, 7)
    with pytest.raises(InvariantViolation) as caught:
        check_fold(steps, total, 0, 6, states=[1, 4, 6])
    assert caught.value.sequence == 2
    with pytest.raises(InvariantViolation, match="2 states, 3 records"):
        check_fold(steps, total, 0, 6, states=[1, 3])


# -- an agent under test: the kit catches a bug and shrinks it -------------------


async def scripted_agent(run: AgentRun, script: list[Any], *, forget_errors: bool) -> None:
    """Plays a generated transcript: the user's words, the tools' answers.

    With ``forget_errors`` it has a classic bug: a tool that fails leaves its
    call without a result.
    """
    outcomes = {data["id"]: data for kind, data in script if kind == "tool_result"}
    for kind, data in script:
        if kind == "tool_result":
            continue
        await run.record(kind, data)
        if kind == "tool_call":
            outcome = outcomes[data["id"]]
            if forget_errors and "error" in outcome:
                continue
            key = {"tool": data["tool"], "args": data["args"]}
            await run.call("tool_result", key, lambda outcome=outcome: outcome)


async def run_agent(script: list[Any], *, forget_errors: bool) -> None:
    async with fresh_journal() as journal:
        async with record_run(journal, "s") as run:
            await scripted_agent(run, script, forget_errors=forget_errors)
        await check_session(journal, "s")
        replayed = await assert_replays(
            journal, "s", lambda r: scripted_agent(r, script, forget_errors=forget_errors)
        )
        assert replayed.executed == 0


@few
@given(transcripts())
async def test_the_correct_agent_keeps_the_invariants_and_replays(script: list[Any]) -> None:
    await run_agent(script, forget_errors=False)


def test_a_broken_agent_is_caught_and_shrunk_to_a_minimal_transcript() -> None:
    with asyncio.Runner() as runner:

        def breaks(script: list[Any]) -> bool:
            try:
                runner.run(run_agent(script, forget_errors=True))
            except InvariantViolation:
                return True
            return False

        # No explain phase: find() reports only the minimal example.
        shrink = settings(database=None, deadline=None, phases=[Phase.generate, Phase.shrink])
        minimal = find(transcripts(), breaks, settings=shrink)
    assert minimal == [
        ("message", {"role": "user", "text": ""}),
        ("tool_call", {"id": "call-1", "tool": "search", "args": None}),
        ("tool_result", {"id": "call-1", "error": ""}),
        ("message", {"role": "assistant", "text": ""}),
    ]
