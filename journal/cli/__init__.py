"""The ``eventstore`` command: inspect, replay, branch and check a file store.

``eventstore --root DIR <command>`` (or ``EVENTSTORE_ROOT``); ``python -m journal``
is the same program. Reading commands open the store ``read_only=True``, so they
work while a writer process holds it; ``fork``, ``merge`` and ``import`` open it
as the writer. ``verify`` never opens a store at all: it reads the files
(:func:`eventstore.file.verify`), so it can report a torn tail without repairing it.

Exit codes: 0 success, 1 damaged data or a failing disk (and ``verify`` finding
problems), 2 a mistake the user can fix (unknown session or branch, bad id,
missing root, locked store, bad import file), 130 interrupted. Every error is
one line on stderr, never a traceback.

Private modules: ``_context`` (what every command shares), one per command
group owning its parsers and handlers (``_reading``, ``_writing``, ``_transfer``,
``_verify``, ``_lifecycle``, ``_consumers``), ``_main`` (the parser and entry
point), ``_render`` and ``_progress``.
"""

from ._main import build_parser as build_parser
from ._main import main as main

__all__ = ("build_parser", "main")
