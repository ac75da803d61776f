"""LangGraph checkpoints in an :class:`~journal.EventJournal` (the ``langgraph`` extra).

:class:`JournalCheckpointSaver` is a LangGraph ``BaseCheckpointSaver``: a
LangGraph thread is a session, a checkpoint and each task's pending writes
are records of it, and time travel (running from an earlier checkpoint) forks
an eventjournal branch::

    async with open_journal("./events") as journal:
        graph = builder.compile(checkpointer=JournalCheckpointSaver(journal))
        await graph.ainvoke(inputs, {"configurable": {"thread_id": "chat-1"}})
"""

from ._langgraph._saver import JournalCheckpointSaver as JournalCheckpointSaver
from ._langgraph._saver import SyncCallError as SyncCallError
from ._langgraph._threads import InvalidThreadId as InvalidThreadId

__all__ = ("InvalidThreadId", "JournalCheckpointSaver", "SyncCallError")
