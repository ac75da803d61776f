"""JournalSessionService answers as ADK's InMemorySessionService does, on every backend."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

pytest.importorskip("google.adk")

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid
from google.adk.sessions import InMemorySessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from eventstore import MemoryEventStore
from journal import EventJournal
from journal.integrations.adk import JournalSessionService, session_key
from tests.conftest import StoreFactory

_LONG = "a session id with spaces " * 3
#: (app index, user, session id): mostly one session, so histories grow.
_TARGETS = st.sampled_from(
    [
        (0, "u1", "s1"),
        (0, "u1", "s1"),
        (0, "u1", " s1 "),
        (0, "u1", _LONG),
        (0, "user@example.com", "s1"),
        (1, "user@example.com", "s1"),
        (0, "u1", None),
    ]
)
_KEYS = st.sampled_from(["k", "x", "app:k", "app:y", "user:k", "temp:k"])
# PostgreSQL's jsonb refuses NUL (the store's documented limit).
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=3)
_VALUES = st.one_of(st.integers(-5, 5), _TEXT)
_STATE = st.dictionaries(_KEYS, _VALUES, max_size=3)
_EVENT = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["e1", "e2", None, None]),
        "offset": st.sampled_from([0.0, 0.0, -2.5]),
        "delta": _STATE,
        "partial": st.sampled_from([False, False, False, True]),
        "text": _TEXT,
    }
)
_CONFIG = st.tuples(
    st.sampled_from([None, None, 0, 1, 2, 4]),
    st.sampled_from([None, None, None, 1.0, 3.0, 6.5]),  # steps back from now
)
_OPS = st.one_of(
    st.tuples(st.just("create"), _TARGETS, _STATE),
    st.tuples(st.just("append"), _TARGETS, _EVENT),
    st.tuples(st.just("append"), _TARGETS, _EVENT),
    st.tuples(st.just("append"), _TARGETS, _EVENT),
    st.tuples(st.just("get"), _TARGETS, _CONFIG),
    st.tuples(st.just("get"), _TARGETS, _CONFIG),
    st.tuples(st.just("redeliver"), _TARGETS, st.none()),
    st.tuples(st.just("list"), _TARGETS, st.booleans()),
    st.tuples(st.just("delete"), _TARGETS, st.none()),
    st.tuples(st.just("user_state"), _TARGETS, st.none()),
)
_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


def _event(step: int, spec: dict[str, Any]) -> Event:
    return Event(
        id=spec["id"] or f"ev-{step}",
        invocation_id="inv-1",
        author="user",
        timestamp=1000.0 + step + spec["offset"],
        partial=spec["partial"] or None,
        content=types.Content(role="user", parts=[types.Part(text=spec["text"])]),
        actions=EventActions(state_delta=dict(spec["delta"])),
    )


def _dump(value: Any) -> Any:
    if isinstance(value, Session | Event):
        return value.model_dump()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


class Driver:
    """Runs one operation on one service, holding session objects as an agent would."""

    def __init__(self, service: Any, apps: list[str]) -> None:
        self.service = service
        self.apps = apps
        self.held: dict[tuple[str, str, str], Session] = {}
        self.last_event: Event | None = None

    def _holder(self, app: str, user: str, sid: str | None) -> Session:
        key = (app, user, (sid or "").strip())
        if key not in self.held:
            self.held[key] = Session(app_name=app, user_id=user, id=key[2] or "none")
        return self.held[key]

    async def run(self, step: int, op: str, target: tuple[int, str, Any], arg: Any) -> Any:
        app_index, user, sid = target
        app = self.apps[app_index]
        try:
            return await self._run(step, op, app, user, sid, arg)
        except Exception as exc:  # the differential compares error types too
            return type(exc).__name__

    async def _run(self, step: int, op: str, app: str, user: Any, sid: Any, arg: Any) -> Any:
        s = self.service
        if op == "create":
            session = await s.create_session(app_name=app, user_id=user, state=arg, session_id=sid)
            self.held[(app, user, session.id)] = session
            return _dump(session)
        if op == "append":
            holder = self._holder(app, user, sid)
            self.last_event = _event(step, arg)
            event = await s.append_event(holder, self.last_event)
            return _dump(event), _dump(holder)
        if op == "redeliver":
            if self.last_event is None:
                return None
            holder = self._holder(app, user, sid)
            return _dump(await s.append_event(holder, self.last_event)), _dump(holder)
        if op == "get":
            recent, after = arg
            after = None if after is None else 1000.0 + step - after
            config = GetSessionConfig(num_recent_events=recent, after_timestamp=after)
            session = await s.get_session(
                app_name=app, user_id=user, session_id=sid or "", config=config
            )
            if session is not None:
                self.held[(app, user, session.id)] = session
            return _dump(session)
        if op == "list":
            return _dump(await s.list_sessions(app_name=app, user_id=user if arg else None))
        if op == "delete":
            return await s.delete_session(app_name=app, user_id=user, session_id=sid or "")
        return await s.get_user_state(app_name=app, user_id=user)


@_SETTINGS
@given(ops=st.lists(_OPS, min_size=40, max_size=80))
async def test_same_answers_as_in_memory_session_service(
    store_factory: StoreFactory, ops: list[tuple[Any, ...]]
) -> None:
    tag = uuid.uuid4().hex[:8]
    apps = [f"app-{tag}", f"my app/{tag}"]
    peer = Driver(InMemorySessionService(), apps)
    async with EventJournal(store_factory()) as journal:
        ours = Driver(JournalSessionService(journal), apps)
        opening = [("create", (0, "u1", "s1"), {}), ("create", (0, "u1", None), {})]
        for step, (op, *args) in enumerate([*opening, *ops]):
            # Same clock and same generated ids for both services at each step.
            platform_time.set_time_provider(lambda step=step: 1000.0 + step)
            platform_uuid.set_id_provider(lambda step=step: f"gen-{step}")
            try:
                expected = await peer.run(step, op, *args)
                got = await ours.run(step, op, *args)
            finally:
                platform_time.reset_time_provider()
                platform_uuid.reset_id_provider()
            assert got == expected, (step, op, args)
            hypothesis_event(f"{op}: {expected if isinstance(expected, str) else 'ok'}")
            if op == "get" and isinstance(expected, dict):
                hypothesis_event(f"get events: {min(len(expected['events']), 3)}")


async def test_temp_state_reaches_the_session_object_only() -> None:
    async with EventJournal(MemoryEventStore()) as journal:
        service = JournalSessionService(journal)
        session = await service.create_session(app_name="a", user_id="u", session_id="s")
        delta = {"temp:scratch": 1, "k": 2, "app:v": 3, "user:w": 4}
        await service.append_event(
            session, Event(author="x", actions=EventActions(state_delta=delta))
        )
        assert session.state == {"temp:scratch": 1, "k": 2, "app:v": 3, "user:w": 4}
        again = await service.get_session(app_name="a", user_id="u", session_id="s")
        assert again is not None
        assert again.state == {"k": 2, "app:v": 3, "user:w": 4}
        assert "temp:scratch" not in again.events[0].actions.state_delta
        other = await service.create_session(app_name="a", user_id="u2")
        assert other.state == {"app:v": 3}  # app state is shared, user state is not
        assert await service.get_user_state(app_name="a", user_id="u") == {"w": 4}


async def test_ids_are_mapped_and_the_originals_kept(store_factory: StoreFactory) -> None:
    async with EventJournal(store_factory()) as journal:
        service = JournalSessionService(journal)
        await service.create_session(app_name="my app", user_id="ann@example.com", session_id="s/1")
        key = session_key("my app", "ann@example.com", "s/1")
        assert await journal.list_sessions() == [key]
        first = (await journal.read(key))[0]
        assert first.kind == "session_created"
        assert (first.data["app_name"], first.data["user_id"], first.data["session_id"]) == (
            "my app",
            "ann@example.com",
            "s/1",
        )


async def test_events_are_found_by_key_and_survive_a_reopen(
    persistent_store_factory: StoreFactory,
) -> None:
    async with EventJournal(persistent_store_factory()) as journal:
        service = JournalSessionService(journal)
        session = await service.create_session(app_name="a", user_id="u", session_id="s")
        for n in range(5):
            await service.append_event(
                session, Event(id=f"e{n}", author="x", actions=EventActions(state_delta={"n": n}))
            )
    async with EventJournal(persistent_store_factory()) as journal:
        service = JournalSessionService(journal)
        record = await journal.get_by_key(session_key("a", "u", "s"), "e3")
        assert record is not None and record.data["id"] == "e3"
        last = await service.get_session(
            app_name="a", user_id="u", session_id="s", config=GetSessionConfig(num_recent_events=2)
        )
        assert last is not None
        assert [e.id for e in last.events] == ["e3", "e4"]
        assert last.state == {"n": 4}
