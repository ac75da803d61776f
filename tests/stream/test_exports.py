"""``stream.__all__`` and the package's public attributes never drift apart."""

from __future__ import annotations

import types

import stream


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(stream).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert isinstance(stream.__all__, tuple)
    assert set(stream.__all__) == public
    assert list(stream.__all__) == sorted(stream.__all__)
    for name in stream.__all__:
        assert getattr(stream, name).__module__.startswith("stream.")
