"""Google ADK sessions kept in an eventjournal (extra ``adk``).

:class:`JournalSessionService` is an ADK ``BaseSessionService``: pass it as
``Runner(agent=..., app_name=..., session_service=JournalSessionService(journal))``.
"""

from ._adk import JournalSessionService as JournalSessionService
from ._adk import session_key as session_key

__all__ = ("JournalSessionService", "session_key")
