"""Google ADK sessions, events and state scopes kept in an eventjournal.

``JournalSessionService`` is an ADK ``BaseSessionService``. A real ADK
``Runner`` drives a small agent that needs no model (no network): it counts
the visits of a session (session state), of the user across sessions
(``user:``), of the whole app (``app:``), and keeps a scratch value
(``temp:``) that ADK never stores. Two users talk to it; then we read the
sessions back through the service, and the raw journal under it.

Run: ``python examples/adk_session.py [ROOT]`` (a temporary directory by default).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path

from google.adk.agents import BaseAgent
from google.adk.agents.invocation_context import InvocationContext
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.runners import Runner
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from journal import open_journal
from journal.integrations.adk import JournalSessionService, session_key

APP = "visit counter"  # not an eventjournal identifier: the service maps it


class VisitCounter(BaseAgent):
    """Answers with visit counts, kept in the three persistent state scopes."""

    async def _run_async_impl(self, ctx: InvocationContext) -> AsyncGenerator[Event, None]:
        state = ctx.session.state
        visits = state.get("visits", 0) + 1
        mine = state.get("user:visits", 0) + 1
        everyone = state.get("app:visits", 0) + 1
        text = f"visit {visits} here, {mine} for you, {everyone} in all"
        yield Event(
            invocation_id=ctx.invocation_id,
            author=self.name,
            content=types.Content(role="model", parts=[types.Part(text=text)]),
            actions=EventActions(
                state_delta={
                    "visits": visits,
                    "user:visits": mine,
                    "app:visits": everyone,
                    "temp:scratch": text,
                }
            ),
        )


async def say(runner: Runner, user: str, session_id: str, text: str) -> None:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    async for event in runner.run_async(user_id=user, session_id=session_id, new_message=message):
        if event.content and event.content.parts:
            print(f"{user} ({session_id}) -> {event.content.parts[0].text}")


async def main(root: Path) -> None:
    async with open_journal(root) as journal:
        service = JournalSessionService(journal)
        runner = Runner(app_name=APP, agent=VisitCounter(name="counter"), session_service=service)
        await service.create_session(app_name=APP, user_id="ana@example.com", session_id="chat 1")
        await service.create_session(app_name=APP, user_id="ana@example.com", session_id="chat 2")
        await service.create_session(app_name=APP, user_id="ben", session_id="chat 1")
        await say(runner, "ana@example.com", "chat 1", "hi")
        await say(runner, "ana@example.com", "chat 1", "hi again")
        await say(runner, "ana@example.com", "chat 2", "new chat")
        await say(runner, "ben", "chat 1", "hello")

        session = await service.get_session(
            app_name=APP,
            user_id="ana@example.com",
            session_id="chat 1",
            config=GetSessionConfig(num_recent_events=1),
        )
        assert session is not None
        print(f"ana's chat 1: state {dict(sorted(session.state.items()))}")
        print(f"  last event: {session.events[-1].content.parts[0].text}")  # type: ignore[union-attr]
        listed = await service.list_sessions(app_name=APP)
        print("sessions:", ", ".join(f"{s.user_id}/{s.id}" for s in listed.sessions))

        key = session_key(APP, "ana@example.com", "chat 1")
        print(f"in the journal, {key}:")
        for record in await journal.read(key):
            author, state = record.data.get("author", ""), record.metadata.get("state", "")
            print(f"  {record.sequence} {record.kind:<15} {author:<8} {state}")
        if len(sys.argv) > 1:
            print(f"try: eventstore --root {root} sessions")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
