"""The PostgreSQL backend (the ``postgres`` extra): many writers, one contract.

``PostgresEventStore`` is the store. Private modules: ``_schema`` (DDL,
migrations and every SQL statement), ``_pool`` (the connection pool),
``_listen`` (LISTEN/NOTIFY wake-ups across processes).
"""

from ._store import PostgresEventStore as PostgresEventStore

__all__ = ("PostgresEventStore",)
