"""``python -m journal``: the ``eventstore`` command line."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
