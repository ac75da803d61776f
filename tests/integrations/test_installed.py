"""Under ``CI=true`` every integration test must run: the frameworks must be installed.

The other modules here skip themselves without their framework (a user's
checkout without the ``langgraph``, ``openai-agents`` or ``adk`` extra); this
one turns those skips into a failure on CI, as the PostgreSQL fixtures do.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

NEEDED = (
    "langgraph",
    "langgraph.checkpoint.conformance",
    "langgraph.checkpoint.sqlite",
    "agents",
    "google.adk",
)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_integration_dependencies_are_installed() -> None:
    missing = [m for m in NEEDED if not _installed(m)]
    if missing and os.environ.get("CI", "").lower() not in ("true", "1"):
        pytest.skip(f"not installed: {', '.join(missing)}")
    assert not missing, f"CI must install {', '.join(missing)} (the integration extras, via .[dev])"
