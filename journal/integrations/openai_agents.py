"""OpenAI Agents SDK sessions kept in an eventjournal (extra ``openai-agents``).

:class:`JournalSession` implements the SDK's ``Session`` protocol: pass it as
``Runner.run(agent, input, session=JournalSession("chat-42", journal))``.
"""

from ._openai_agents import JournalSession as JournalSession
from ._openai_agents import journal_session_id as journal_session_id

__all__ = ("JournalSession", "journal_session_id")
