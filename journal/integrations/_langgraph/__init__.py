"""The LangGraph checkpointer; import it from :mod:`journal.integrations.langgraph`."""
