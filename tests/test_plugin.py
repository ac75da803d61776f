"""The ``eventjournal`` pytest plugin, as a user's project sees it (pytester).

Inner runs load the plugin through its ``pytest11`` entry point, the way an
installed eventjournal reaches every project.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

USES_FIXTURES = """
import pytest
from eventstore import EventRecord, MemoryEventStore
from eventstore.file import FileEventStore

{marker}
async def test_event_store(event_store):
    assert isinstance(event_store, MemoryEventStore) and not event_store.closed
    await event_store.append(EventRecord.new("s1", "main", 1, "message", {{"n": 1}}))
    assert await event_store.head("s1") == 1

{marker}
async def test_file_event_store(file_event_store, tmp_path):
    assert isinstance(file_event_store, FileEventStore)
    assert file_event_store.root.startswith(str(tmp_path))
    await file_event_store.append(EventRecord.new("s1", "main", 1, "message"))
    assert (tmp_path / "eventstore" / "s1" / "main.jsonl").exists()

{marker}
async def test_event_journal(event_journal):
    record = await event_journal.record("s1", "message", {{"text": "hi"}})
    assert record.sequence == 1
    assert await event_journal.read("s1") == [record]

{marker}
async def test_each_test_gets_a_fresh_store(event_store):
    assert await event_store.list_sessions() == []
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_fixtures_in_a_user_project(pytester: pytest.Pytester, mode: str) -> None:
    marker = "@pytest.mark.asyncio" if mode == "strict" else ""
    pytester.makepyfile(test_user=USES_FIXTURES.format(marker=marker))
    pytester.makeini(
        f"[pytest]\nasyncio_mode = {mode}\n"
        "asyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_fixtures_close_their_stores(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
        import pytest
        seen = []

        @pytest.mark.asyncio
        async def test_keep(event_store, event_journal):
            seen.extend([event_store, event_journal])

        def test_closed_afterwards():
            assert [s.closed for s in seen] == [True, True]
        """
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_plugin_import_stays_cheap() -> None:
    """pytest loads the plugin in every project: it must not pull in Hypothesis or asyncpg."""
    code = (
        "import sys, eventstore.testing._plugin\n"
        "heavy = ['hypothesis', 'asyncpg', 'eventstore.postgres', 'journal', 'stream']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_third_party_backend_runs_the_contract(pytester: pytest.Pytester) -> None:
    """The shipped contract suite, subclassed for a custom backend in a user's project."""
    pytester.makepyfile(
        test_backend="""
        import pytest
        from eventstore import MemoryEventStore
        from eventstore.testing import EventStoreContract

        class MyStore(MemoryEventStore):
            '''A user's backend: here, the memory store under another name.'''

        class TestMyStore(EventStoreContract):
            @pytest.fixture
            def store_factory(self):
                return MyStore
        """
    )
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 50, outcomes
    assert set(outcomes) == {"passed"}, outcomes
