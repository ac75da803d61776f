"""Agent-framework integrations, each behind its own extra."""
