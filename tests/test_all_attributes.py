"""Each package's ``__all__`` and its public attributes never drift apart."""

from __future__ import annotations

import importlib
from types import FunctionType, ModuleType

import pytest

PACKAGES = [
    "eventstore",
    "eventstore.errors",
    "eventstore.file",
    "eventstore.postgres",
    "eventstore.testing",
    "stream",
    "journal",
    "journal.testing",
    "journal.web",
    "journal.integrations.langgraph",
    "journal.integrations.openai_agents",
    "journal.integrations.adk",
]


def public_attributes(module: ModuleType) -> set[str]:
    # Submodules become attributes of their package once imported; they are
    # reached by import, never through __all__.
    return {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), ModuleType)
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_matches_public_attributes(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, tuple), f"{name}.__all__ must be a tuple"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert not missing, f"{name}.__all__ names what the package lacks: {missing}"
    assert public_attributes(module) == set(exported)


@pytest.mark.parametrize("name", PACKAGES)
def test_public_objects_come_from_the_package(name: str) -> None:
    """A re-export names its home inside our packages, never a third party's."""
    module = importlib.import_module(name)
    for attr in module.__all__:
        obj = getattr(module, attr)
        if isinstance(obj, type | FunctionType):
            assert obj.__module__.split(".")[0] in {"eventstore", "stream", "journal"}, (
                attr,
                obj.__module__,
            )
