"""An OpenAI Agents SDK conversation kept in an eventjournal, rewound and forked.

``JournalSession`` is the SDK's ``Session`` protocol over a journal: every
conversation item is one event. A real ``Runner.run`` drives an agent whose
model is a small fake (no network, no API key) that answers from what it is
shown, so the history it received is visible in its answers. Then we look at
what the journal kept: ``pop_item`` (the SDK's "undo") appends a tombstone
instead of erasing, and a branch continues the conversation from an earlier
turn while the original stays as it was.

Run: ``python examples/openai_agents_session.py [ROOT]`` (a temporary directory by default).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agents import Agent, Model, ModelResponse, RunConfig, Runner, Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from journal import EventJournal, open_journal
from journal.integrations.openai_agents import JournalSession


class PackingModel(Model):
    """A stand-in for a real model: suggests what to pack from the last user message."""

    async def get_response(self, system_instructions: Any, input: Any, *_: Any, **__: Any) -> Any:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        asked = [i["content"] for i in items if i.get("role") == "user"]
        place = asked[-1].split()[-1].rstrip("?.")
        answer = f"For {place}: {'sunscreen' if place == 'Lisbon' else 'an umbrella'}"
        answer += f" (I have seen {len(asked)} question{'s' * (len(asked) > 1)})"
        text = ResponseOutputText(type="output_text", text=answer, annotations=[])
        message = ResponseOutputMessage(
            id=f"msg_{len(items)}", type="message", role="assistant", status="completed",
            content=[text],
        )  # fmt: skip
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *_: Any, **__: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("this example does not stream")


def content(item: Any) -> str:
    value = item["content"]
    return value if isinstance(value, str) else value[0]["text"]


async def show(journal: EventJournal, session: JournalSession) -> None:
    for record in await journal.read(session.journal_session_id, session.branch_id):
        shown = content(record.data) if record.kind == "item" else ""
        if record.kind == "item_popped":
            shown = f"(removes #{record.data['sequence']})"
        print(f"  {record.sequence:>2} {record.branch_id:<6} {record.kind:<11} {shown}")


async def main(root: Path) -> None:
    agent = Agent(name="packer", instructions="Say what to pack.", model=PackingModel())
    config = RunConfig(tracing_disabled=True)
    async with open_journal(root) as journal:
        session = JournalSession("trip-chat", journal)
        for question in ["What should I pack for Lisbon?", "And for Bergen?"]:
            result = await Runner.run(agent, question, session=session, run_config=config)
            print(f"user: {question}\nassistant: {result.final_output}")

        # Undo the last exchange, as the SDK's "correct the last message" recipe does.
        await session.pop_item()
        await session.pop_item()
        print(f"after two pops, {len(await session.get_items())} items are live; the journal:")
        await show(journal, session)

        # Fork the conversation after the first answer and ask something else there.
        await journal.create_branch("trip-chat", "porto", fork_sequence=2)
        fork = JournalSession("trip-chat", journal, branch_id="porto")
        result = await Runner.run(agent, "What about Porto?", session=fork, run_config=config)
        print(f"on branch porto: {result.final_output}")
        print("main branch still ends with:", content((await session.get_items(limit=1))[0]))
        if len(sys.argv) > 1:
            print(f"try: jq -c '[.sequence, .kind]' {root}/trip-chat/main.jsonl")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
