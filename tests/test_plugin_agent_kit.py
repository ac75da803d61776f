"""The plugin's agent-kit side, in a user's project (pytester): ``@given`` and runners."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = (
    "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    "filterwarnings = error\n"
)


def test_fresh_fixtures_under_given_with_default_health_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
        from hypothesis import given, settings
        from eventstore.testing import check_session, transcripts, write_transcript, AgentTranscript
        from journal import record_run

        seen = []

        @settings(max_examples=20, deadline=None)
        @given(transcripts())
        async def test_store_per_example(fresh_store, steps):
            async with fresh_store() as store:
                assert await store.list_sessions() == []
                await write_transcript(store, AgentTranscript("s", tuple(steps)))
                await check_session(store, "s")
                seen.append(store)

        @settings(max_examples=20, deadline=None)
        @given(transcripts())
        async def test_journal_per_example(fresh_journal, steps):
            async with fresh_journal() as journal:
                async with record_run(journal, "s") as run:
                    for kind, data in steps:
                        await run.record(kind, data)
                assert await journal.head("s") == len(steps)

        def test_every_example_had_its_own_store():
            assert len(seen) == len(set(map(id, seen))) > 1
            assert all(store.closed for store in seen)
        """
    )
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_per_test_fixtures_are_what_hypothesis_refuses(pytester: pytest.Pytester) -> None:
    """Why the ``fresh_*`` fixtures exist: the health check names the function-scoped one."""
    pytester.makepyfile(
        test_user="""
        from hypothesis import given, strategies as st

        @given(st.integers())
        async def test_shared(event_store, n):
            pass
        """
    )
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*function-scoped fixture 'event_store'*"])


USES_EVENT_STORE = """
import pytest

async def test_async(event_store):
    pass

def test_sync(event_journal):
    pass
"""


def test_without_an_async_runner_the_error_names_both(pytester: pytest.Pytester) -> None:
    """pytest-asyncio absent (simulated with ``-p no:asyncio``), anyio's plugin too."""
    pytester.makepyfile(test_user=USES_EVENT_STORE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:anyio"
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*the event_store fixture is async and no async test runner is active: install "
            "pytest-asyncio*mark the test @pytest.mark.anyio*",
        ]
    )
    result.stdout.fnmatch_lines(["*the event_journal fixture is async*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_anyio_marked_tests_get_the_fixtures_without_pytest_asyncio(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_user="""
        import pytest
        from eventstore import EventRecord

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_store(event_store):
            await event_store.append(EventRecord.new("s", "main", 1, "message"))
            assert await event_store.head("s") == 1

        async def test_unmarked(event_store):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the event_store fixture is async*"])
