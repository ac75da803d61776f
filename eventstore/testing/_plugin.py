"""pytest plugin (``pytest11`` entry point ``eventjournal``): fixtures for users' tests."""

from __future__ import annotations
