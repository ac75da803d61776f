"""A real ``Runner.run`` keeps its conversation in a JournalSession (fake model, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import Agent, Model, ModelResponse, RunConfig, Runner, Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from journal import open_journal
from journal.integrations.openai_agents import JournalSession


class CountingModel(Model):
    """Answers with how many input items it was shown, so history shows in the output."""

    def __init__(self) -> None:
        self.inputs: list[list[Any]] = []

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kw: Any
    ) -> Any:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        self.inputs.append(items)
        text = ResponseOutputText(type="output_text", text=f"saw {len(items)}", annotations=[])
        message = ResponseOutputMessage(
            id=f"msg_{len(self.inputs)}",
            type="message",
            role="assistant",
            status="completed",
            content=[text],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


async def test_runner_run_remembers_across_turns_and_reopen(tmp_path: Path) -> None:
    model = CountingModel()
    agent = Agent(name="echo", instructions="be brief", model=model)
    config = RunConfig(tracing_disabled=True)
    async with open_journal(tmp_path / "store") as journal:
        session = JournalSession("support chat #1", journal)
        first = await Runner.run(agent, "hello", session=session, run_config=config)
        second = await Runner.run(agent, "again", session=session, run_config=config)
        assert (first.final_output, second.final_output) == ("saw 1", "saw 3")
        assert [i.get("content") for i in model.inputs[1][:1]] == ["hello"]
    async with open_journal(tmp_path / "store") as journal:
        session = JournalSession("support chat #1", journal)
        items = await session.get_items()
        assert len(items) == 4
        assert [items[0]["content"], items[2]["content"]] == ["hello", "again"]  # type: ignore[typeddict-item]
        third = await Runner.run(agent, "more", session=session, run_config=config)
        assert third.final_output == "saw 5"
        records = await journal.read(session.journal_session_id)
        assert {r.kind for r in records} == {"item"}
        assert records[0].metadata["openai_session_id"] == "support chat #1"
