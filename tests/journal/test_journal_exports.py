"""``journal.__all__`` and the package's public attributes never drift apart."""

from __future__ import annotations

import types

import journal


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(journal).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert isinstance(journal.__all__, tuple)
    assert set(journal.__all__) == public
    assert list(journal.__all__) == sorted(journal.__all__)
