"""``examples/langgraph_agent.py`` runs as a user runs it (see ``tests/test_examples.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("langgraph")

from tests import test_examples as _examples
from tests.test_examples import Example

# LangGraph's import alone takes 1-2.5 s on a loaded CI box; the run itself ~0.3 s.
EXAMPLES = [
    Example("langgraph_agent.py", "after time travel: draft[strict]", budget=10.0),
    Example("langgraph_agent.py", "forked from main at #", with_root=True, budget=10.0),
]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.script}{'-root' * e.with_root}")
def test_langgraph_example_runs(example: Example, tmp_path: Path) -> None:
    _examples.test_example_runs(example, tmp_path)
