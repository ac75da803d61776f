"""The PostgreSQL backend (the ``postgres`` extra): many writers, one contract.

``PostgresEventStore`` is the store. Private modules: ``_schema`` (DDL,
migrations and every SQL statement), ``_rows`` (rows to records, by column
name), ``_pool`` (the connection pool), ``_listen`` (committed ranges from
other processes, through LISTEN/NOTIFY).
"""

from ._store import PostgresEventStore as PostgresEventStore

__all__ = ("PostgresEventStore",)
