"""journal.web: a live viewer and resumable Server-Sent Events over a journal (extra ``web``).

:func:`create_app` returns an ASGI app (Starlette) to mount in a service or to
run with ``eventstore serve``: JSON endpoints for sessions, branches and
events, one SSE stream per branch (``id:`` = sequence) and one for the global
feed (``id:`` = position), both resumable with ``Last-Event-ID``, and the
viewer page at ``/``. It only reads. Importing this package needs the ``web``
extra (``starlette``, ``sse-starlette``; ``uvicorn`` to serve).
"""

from ._app import create_app as create_app
from ._params import WebError as WebError

__all__ = ("WebError", "create_app")
