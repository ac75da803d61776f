"""DDL, migrations and the SQL statements of :mod:`eventstore.postgres`.

Every statement is a template over one schema name, rendered once per store so
asyncpg's per-connection statement cache prepares each of them once.
"""

from __future__ import annotations

import re
from typing import Any

from .._errors import StorageError
from ._rows import EVENT_COLUMNS

__all__ = (
    "MAX_PER_TRANSACTION",
    "SCHEMA_VERSION",
    "Statements",
    "check_schema_name",
    "migrate",
)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")

#: The newest layout this code writes; recorded in ``<schema>.schema_version``.
SCHEMA_VERSION = 5

#: Records one transaction may insert: a position is ``xid * MAX_PER_TRANSACTION
#: + ordinal``, so the ordinal must stay below it.
MAX_PER_TRANSACTION = 1 << 20

# The writing transaction's id, scaled: the first position it may use. xid8 has
# no cast to bigint; the multiplication (unlike a shift) raises on overflow.
_XID_BASE = f"pg_current_xact_id()::text::bigint * {MAX_PER_TRANSACTION}"
# Every transaction below the snapshot's xmin has ended, and every later one
# gets a larger xid, so positions below this bound never gain a row again.
_HORIZON = f"pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {MAX_PER_TRANSACTION}"

# Index i holds the DDL that takes the schema from version i to i + 1. A migration
# is only ever appended, never edited, so every database walks the same path.
# Identifiers use the "C" collation: sorted like Python sorts them, and faster.
# data/metadata are ``json``, not ``jsonb``: json keeps the text exactly as sent,
# so every payload the contract accepts round-trips unchanged (jsonb rejects
# "\u0000" and rewrites 1e20 as an integer); cast to jsonb in queries to index it.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.branches (
        session_id     text COLLATE "C" NOT NULL,
        branch_id      text COLLATE "C" NOT NULL,
        parent_branch  text COLLATE "C",
        fork_sequence  bigint NOT NULL,
        head           bigint NOT NULL,
        created_at     timestamptz NOT NULL,
        updated_at     timestamptz NOT NULL,
        merged_into    text COLLATE "C",
        PRIMARY KEY (session_id, branch_id)
    );
    CREATE TABLE {s}.events (
        session_id   text COLLATE "C" NOT NULL,
        branch_id    text COLLATE "C" NOT NULL,
        sequence     bigint NOT NULL,
        event_id     text COLLATE "C" NOT NULL,
        kind         text NOT NULL,
        data         json,
        metadata     json NOT NULL,
        recorded_at  timestamptz NOT NULL,
        position     bigint GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (session_id, branch_id, sequence),
        CONSTRAINT events_event_id_key UNIQUE (session_id, event_id)
    );
    """,
    # 2: closed branches, and one row per session so sessions() pages through an
    # index. Every write to a session's branches or events upserts its row in the
    # same transaction, after the branch rows (the lock order delete_session
    # relies on); the counts are summed from the branch rows of a page's sessions.
    # Processes still running version-1 code write no session rows: stop them
    # before the upgrade (a version-1 process refuses to open a version-2 schema).
    """
    ALTER TABLE {s}.branches
        ADD COLUMN closed boolean NOT NULL DEFAULT false,
        ADD COLUMN closed_at timestamptz;
    UPDATE {s}.branches SET closed = true, closed_at = updated_at
        WHERE merged_into IS NOT NULL;
    CREATE TABLE {s}.sessions (
        session_id     text COLLATE "C" PRIMARY KEY,
        created_at     timestamptz NOT NULL,
        last_activity  timestamptz NOT NULL
    );
    CREATE INDEX sessions_last_activity ON {s}.sessions (last_activity);
    INSERT INTO {s}.sessions (session_id, created_at, last_activity)
    SELECT b.session_id, min(b.created_at),
           greatest(max(b.updated_at), (SELECT max(e.recorded_at) FROM {s}.events e
                                        WHERE e.session_id = b.session_id))
    FROM {s}.branches b GROUP BY b.session_id;
    """,
    # 3: the global feed. Writers set the position from their xid (see
    # Statements); the rows already stored keep the identity values they have,
    # which lie below every xid-based position unless a past transaction wrote
    # over a million rows on average (refused rather than renumbered silently).
    # Not UNIQUE: a distributed (Citus) table cannot enforce it without the
    # session, and xid-based positions are unique by construction. Processes
    # still running version-2 code would number rows from the identity: stop
    # them before the upgrade (they refuse to open a version-3 schema).
    f"""
    ALTER TABLE {{s}}.events ALTER COLUMN position DROP IDENTITY;
    DO $$ BEGIN
        IF (SELECT coalesce(max(position), 0) FROM {{s}}.events) >= {_XID_BASE} THEN
            RAISE EXCEPTION 'stored positions collide with transaction ids';
        END IF;
    END $$;
    CREATE INDEX events_position ON {{s}}.events (position);
    """,
    # 4: durable consumers (eventstore.postgres._consumers): one row per consumer
    # holding its checkpoint and lease, and its dead letters keyed by position.
    """
    CREATE TABLE {s}.consumers (
        name              text COLLATE "C" PRIMARY KEY,
        position          bigint NOT NULL DEFAULT 0,
        holder            text,
        lease_expires_at  timestamptz,
        updated_at        timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE {s}.dead_letters (
        consumer         text COLLATE "C" NOT NULL,
        position         bigint NOT NULL,
        session_id       text COLLATE "C" NOT NULL,
        branch_id        text COLLATE "C" NOT NULL,
        sequence         bigint NOT NULL,
        event_id         text COLLATE "C" NOT NULL,
        attempts         integer NOT NULL,
        error_type       text NOT NULL,
        error_message    text NOT NULL,
        first_failed_at  timestamptz NOT NULL,
        last_failed_at   timestamptz NOT NULL,
        PRIMARY KEY (consumer, position)
    );
    """,
    # 5: lookups by metadata["key"] (get_by_key). Only rows whose key is a JSON
    # string are indexed, by its md5 (a btree entry must stay under ~2.7 kB,
    # and a key may be longer), with the position last so "the last written"
    # is the first entry of a backward scan. Lookups by event id use the
    # UNIQUE (session_id, event_id) index of version 1. Building it reads
    # every row once, holding off writes meanwhile: on a large table, run
    # this migration at a quiet time.
    """
    CREATE INDEX events_key ON {s}.events (session_id, md5(metadata->>'key'), position)
        WHERE json_typeof(metadata->'key') = 'string';
    """,
)


def check_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a plain lower-case SQL identifier of at most 48 chars.

    :raises ValueError: otherwise.
    """
    if not isinstance(schema, str) or _SCHEMA_NAME.fullmatch(schema) is None:
        raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, got {schema!r}")
    return schema


async def migrate(conn: Any, schema: str) -> None:
    """Create or upgrade the schema; safe when several processes open at once.

    :raises StorageError: if the database holds a newer layout than this code knows.
    """
    s = f'"{schema}"'
    async with conn.transaction():
        # Serialises concurrent first opens: CREATE ... IF NOT EXISTS alone still
        # races on the catalog's unique indexes.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"eventjournal:{schema}")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_version ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {s}.schema_version")
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"schema {schema!r} is at version {current}; this eventjournal knows "
                f"up to {SCHEMA_VERSION}: upgrade eventjournal"
            )
        for version in range(current, SCHEMA_VERSION):
            await conn.execute(_MIGRATIONS[version].format(s=s))
            await conn.execute(f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version + 1)


class Statements:
    """The SQL of one store, rendered for its schema and notification channel.

    Rows are read by column name; each statement names the columns it returns.
    """

    __slots__ = (
        "append_at_head",
        "append_at_head_one",
        "append_new",
        "append_new_at_head",
        "append_new_at_head_one",
        "append_new_one",
        "append_next",
        "append_next_one",
        "branch",
        "branch_for_share",
        "branch_for_update",
        "branches",
        "branches_for_update",
        "by_event_id",
        "by_event_ids",
        "by_key",
        "close_branch",
        "copy_branches",
        "copy_count",
        "copy_events",
        "copy_history",
        "copy_main",
        "create_branch",
        "custom_plans",
        "delete_branch",
        "delete_session",
        "ensure_main",
        "feed",
        "feed_head",
        "forks_of",
        "head",
        "horizon",
        "lock_branch",
        "lock_session",
        "lock_session_branches",
        "lock_session_branches_share",
        "lock_session_graph",
        "mark_merged",
        "own_events",
        "range",
        "read",
        "read_at",
        "read_last",
        "session_ids",
        "sessions",
        "span",
        "touch_session",
        "xmin",
    )

    def __init__(self, schema: str, channel: str) -> None:
        s = f'"{schema}"'
        # Lock order. Every transaction that changes a session takes its locks in
        # this order, never the other way round, so none of them can deadlock:
        #   1. lock_session_graph (fork, merge, close, delete_branch, delete_session);
        #   2. lock_branch of the branch it inserts records into (append,
        #      append_next, a merge's target), before its first write;
        #   3. branch rows, in branch id order (merges, delete_session);
        #   4. the session's row, upserted last by every write.
        # Appends skip 1 and take 2, 3, 4 in one statement; delete_session and
        # delete_branch take no 2 (they insert nothing, so order no positions).
        # The two advisory locks cannot collide: one is keyed by two int4, the
        # other by one bigint, which PostgreSQL keeps apart.

        # Appends to one branch queue on this lock BEFORE their first write, which
        # is what gives the transaction its xid: a later sequence of a branch
        # therefore always has a larger xid, so a larger position. The row lock
        # alone would not do: an UPDATE takes its xid before waiting for the row.
        # A hash collision only makes two branches wait for each other.
        self.lock_branch = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))"
        lock = f"l AS ({self.lock_branch})"
        # The session's row is upserted after its branch rows, in every write: the
        # lock order that lets delete_session wait for writes instead of deadlocking.
        upsert_session = f"""
            INSERT INTO {s}.sessions AS ss (session_id, created_at, last_activity)
            SELECT $1, now(), greatest(now(), {{moment}}) FROM {{source}}
            ON CONFLICT (session_id) DO UPDATE
                SET last_activity = greatest(ss.last_activity, {{moment}})"""

        # $3 first sequence, $4..$8 one array per column (or, in the ``*_one``
        # statements, one value per column: a batch of one skips the arrays and
        # their unnest, about a third of a single append's server time), $9 the
        # notification payload's start (instance, session, branch), completed
        # here with the sequences and the first position, known only here. data
        # and metadata travel as text and are cast to json, which validates
        # without un-escaping (json_to_recordset would reject "\u0000"). The
        # events insert reads from the branch row the first CTE advanced, so the
        # head check and the insert are one atomic statement: a stale head
        # advances no row and inserts nothing; the primary key backs it up; the
        # session's row is upserted from that same branch row. Positions: the
        # xid-based base plus the ordinal; one insert per transaction.
        many = (
            "unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[])"
            " WITH ORDINALITY",
            "cardinality($4::text[])",
            "(SELECT max(r) FROM unnest($8::timestamptz[]) r)",
        )
        one = (
            "(SELECT $4::text, $5::text, $6::text, $7::text, $8::timestamptz, 1::bigint)",
            "1",
            "$8::timestamptz",
        )

        def statements(rows: str, count: str, newest: str) -> tuple[str, str, str, str]:
            def insert_tail(first: str) -> str:
                return f"""
        , p AS (SELECT {_XID_BASE} AS base, {first} AS first FROM b)
        , e AS (
            INSERT INTO {s}.events (session_id, branch_id, sequence, event_id, kind, data,
                                    metadata, recorded_at, position)
            SELECT $1, $2, p.first - 1 + u.n, u.event_id, u.kind, u.data::json,
                   u.metadata::json, u.recorded_at, p.base - 1 + u.n
            FROM p, {rows} AS u(event_id, kind, data, metadata, recorded_at, n)
        ), t AS ({upsert_session.format(moment=newest, source="b")}
        )
        SELECT p.base, p.first, pg_notify('{channel}', concat_ws(',', $9::text, p.first,
            p.first - 1 + {count}, p.base) || ']') FROM p
        """

            # "- 1" first: $3 + n would overflow for a batch ending at the largest bigint.
            new_head = f"$3::bigint - 1 + {count}"
            # (SELECT true FROM l) is a one-time filter: the lock is held before the
            # scan reaches the row.
            append_next = f"""
        WITH {lock}, b AS (
            UPDATE {s}.branches SET head = {new_head}, updated_at = now()
            WHERE session_id = $1 AND branch_id = $2
              AND head = $3::bigint - 1 AND NOT closed AND (SELECT true FROM l)
            RETURNING head
        ){insert_tail("$3::bigint")}"""
            # Sequence 1 of main may create it (no other branch comes into being by an
            # append); ON CONFLICT makes create-or-advance one atomic step, re-checked
            # against the row's newest version.
            append_new = f"""
        WITH {lock}, b AS (
            INSERT INTO {s}.branches AS br (session_id, branch_id, parent_branch,
                fork_sequence, head, created_at, updated_at)
            SELECT $1, $2, NULL, 0, {new_head}, now(), now() FROM l
            ON CONFLICT (session_id, branch_id) DO UPDATE
                SET head = EXCLUDED.head, updated_at = now()
                WHERE br.head = $3::bigint - 1 AND NOT br.closed
            RETURNING head
        ){insert_tail("$3::bigint")}"""
            # append_next numbered at acceptance: head + 1.. of the row as locked ($3
            # unused but typed, so every append statement takes the same arguments).
            # An existing open branch only: this one; main may be created by the next.
            append_at_head = f"""
        WITH {lock}, b AS (
            UPDATE {s}.branches SET head = head + {count} + 0 * $3::bigint, updated_at = now()
            WHERE session_id = $1 AND branch_id = $2 AND NOT closed AND (SELECT true FROM l)
            RETURNING head
        ){insert_tail(f"b.head - {count} + 1")}"""
            append_new_at_head = f"""
        WITH {lock}, b AS (
            INSERT INTO {s}.branches AS br (session_id, branch_id, parent_branch,
                fork_sequence, head, created_at, updated_at)
            SELECT $1, $2, NULL, 0, {count} + 0 * $3::bigint, now(), now() FROM l
            ON CONFLICT (session_id, branch_id) DO UPDATE
                SET head = br.head + {count}, updated_at = now()
                WHERE NOT br.closed
            RETURNING head
        ){insert_tail(f"b.head - {count} + 1")}"""
            return append_next, append_new, append_at_head, append_new_at_head

        (self.append_next, self.append_new, self.append_at_head, self.append_new_at_head) = (
            statements(*many)
        )
        (
            self.append_next_one,
            self.append_new_one,
            self.append_at_head_one,
            self.append_new_at_head_one,
        ) = statements(*one)
        cols = "branch_id, parent_branch, fork_sequence, head, created_at, merged_into, closed"
        self.head = f"SELECT head FROM {s}.branches WHERE session_id = $1 AND branch_id = $2"
        self.branch = f"SELECT {cols} FROM {s}.branches WHERE session_id = $1 AND branch_id = $2"
        self.branch_for_share = self.branch + " FOR SHARE"
        self.branch_for_update = self.branch + " FOR UPDATE"
        self.branches = f"SELECT {cols} FROM {s}.branches WHERE session_id = $1 ORDER BY branch_id"
        self.branches_for_update = (
            f"SELECT {cols} FROM {s}.branches WHERE session_id = $1 AND branch_id = ANY($2)"
            " ORDER BY branch_id FOR UPDATE"
        )
        self.ensure_main = (
            f"INSERT INTO {s}.branches (session_id, branch_id, parent_branch, fork_sequence,"
            " head, created_at, updated_at) VALUES ($1, 'main', NULL, 0, 0, now(), now())"
            " ON CONFLICT DO NOTHING"
        )
        self.create_branch = (
            f"INSERT INTO {s}.branches (session_id, branch_id, parent_branch, fork_sequence,"
            " head, created_at, updated_at) VALUES ($1, $2, $3, $4, $4, now(), now())"
            f" ON CONFLICT DO NOTHING RETURNING {cols}"
        )
        self.touch_session = upsert_session.format(moment="now()", source="(VALUES (1)) v")
        self.mark_merged = (
            f"UPDATE {s}.branches SET merged_into = $3, closed = true,"
            " closed_at = now(), updated_at = now() WHERE session_id = $1 AND branch_id = $2"
        )
        # Closing a closed branch changes nothing (not even the session's activity).
        self.close_branch = f"""
        WITH b AS (
            UPDATE {s}.branches SET closed = true, closed_at = now(), updated_at = now()
            WHERE session_id = $1 AND branch_id = $2 AND NOT closed
            RETURNING {cols}
        ), t AS ({upsert_session.format(moment="now()", source="b")}
        )
        SELECT {cols} FROM b"""
        self.forks_of = (
            f"SELECT branch_id FROM {s}.branches WHERE session_id = $1 AND parent_branch = $2"
            " ORDER BY branch_id"
        )
        # Branches merged into the deleted one stay closed, merged into nothing.
        self.delete_branch = f"""
        WITH e AS (DELETE FROM {s}.events WHERE session_id = $1 AND branch_id = $2),
             m AS (UPDATE {s}.branches SET merged_into = NULL
                   WHERE session_id = $1 AND merged_into = $2)
        DELETE FROM {s}.branches WHERE session_id = $1 AND branch_id = $2"""
        # Every change to a session's branch graph (fork, merge, close, delete)
        # first takes this lock, so the set of branch rows cannot grow while
        # delete_session locks them; appends, which only advance existing rows,
        # do without it. Two sessions sharing a hash only wait for each other.
        self.lock_session_graph = (
            f"SELECT pg_advisory_xact_lock(hashtext('eventjournal:{schema}'), hashtext($1))"
        )
        # delete_session then locks every branch row (in id order, as merges do),
        # then the session's row; a write that got in first has committed by then
        # and is deleted too, a later one waits and finds the session gone.
        self.lock_session_branches = (
            f"SELECT branch_id FROM {s}.branches WHERE session_id = $1"
            " ORDER BY branch_id FOR UPDATE"
        )
        self.lock_session = f"SELECT 1 FROM {s}.sessions WHERE session_id = $1 FOR UPDATE"
        # copy_session holds off appends to its source (they update these rows).
        self.lock_session_branches_share = (
            f"SELECT branch_id, head FROM {s}.branches WHERE session_id = $1"
            " ORDER BY branch_id FOR SHARE"
        )
        self.delete_session = f"""
        WITH e AS (DELETE FROM {s}.events WHERE session_id = $1),
             b AS (DELETE FROM {s}.branches WHERE session_id = $1 RETURNING 1),
             ss AS (DELETE FROM {s}.sessions WHERE session_id = $1 RETURNING 1),
             d AS (DELETE FROM {s}.dead_letters WHERE session_id = $1)
        SELECT (SELECT count(*) FROM b) + (SELECT count(*) FROM ss) AS deleted"""
        self.session_ids = f"SELECT session_id FROM {s}.sessions ORDER BY session_id"
        # With an activity bound the best plan depends on how many sessions match
        # (few: the last_activity index, then sort; many: the key order, stopping
        # at the limit), which only a plan made for the actual values can know.
        self.custom_plans = "SET LOCAL plan_cache_mode = force_custom_plan"
        # One page: an index range scan of the primary key from the later of
        # ``after`` and ``prefix`` up to the end of the prefix ($3), filtered on
        # activity; only then is each page row's branches summed, through their key.
        self.sessions = f"""
        SELECT p.session_id, c.branches, c.events, p.created_at, p.last_activity
        FROM (
            SELECT session_id, created_at, last_activity FROM {s}.sessions
            WHERE session_id > $1 AND session_id >= $2 AND session_id < $3
              AND last_activity >= coalesce($4::timestamptz, '-infinity')
              AND last_activity < coalesce($5::timestamptz, 'infinity')
            ORDER BY session_id LIMIT $6::bigint
        ) p CROSS JOIN LATERAL (
            SELECT count(*) AS branches,
                   coalesce(sum(b.head - b.fork_sequence), 0)::bigint AS events
            FROM {s}.branches b WHERE b.session_id = p.session_id
        ) c
        ORDER BY p.session_id
        """
        # The order _rows.record unpacks an events row in.
        event_cols = ", ".join(EVENT_COLUMNS)
        # Served by the UNIQUE (session_id, event_id) index.
        self.by_event_ids = (
            f"SELECT {event_cols} FROM {s}.events"
            " WHERE session_id = $1 AND event_id = ANY($2::text[])"
        )
        self.own_events = (
            f"SELECT {event_cols} FROM {s}.events"
            " WHERE session_id = $1 AND branch_id = $2 ORDER BY sequence"
        )
        self.by_event_id = (
            f"SELECT {event_cols} FROM {s}.events WHERE session_id = $1 AND event_id = $2"
        )
        # Served by events_key (schema version 5): the predicate and md5 match it.
        self.by_key = f"""
        SELECT {event_cols} FROM {s}.events
        WHERE session_id = $1 AND json_typeof(metadata->'key') = 'string'
          AND md5(metadata->>'key') = md5($2::text) AND metadata->>'key' = $2::text
        ORDER BY position DESC LIMIT 1
        """

        def chain(lower: str, upper: str) -> str:
            # The lineage of $2 in session $1, each ancestor with the highest
            # sequence of its own records in the history (pruned below ``lower``).
            return f"""
        WITH RECURSIVE chain (branch_id, parent_branch, fork_sequence, upper) AS (
            SELECT branch_id, parent_branch, fork_sequence, least(head, {upper})
            FROM {s}.branches WHERE session_id = $1 AND branch_id = $2
          UNION ALL
            SELECT p.branch_id, p.parent_branch, p.fork_sequence,
                   least(c.upper, c.fork_sequence)
            FROM chain c JOIN {s}.branches p
              ON p.session_id = $1 AND p.branch_id = c.parent_branch
            WHERE least(c.upper, c.fork_sequence) >= {lower}
        )"""

        x_cols = "x." + event_cols.replace(", ", ", x.")
        # Newest first: one backward primary-key scan per segment, each capped at
        # the limit; the caller orders the segments and trims.
        self.read_last = f"""{chain("1", "$3::bigint")}
        SELECT e.* FROM chain c CROSS JOIN LATERAL (
            SELECT {x_cols} FROM {s}.events x
            WHERE x.session_id = $1 AND x.branch_id = c.branch_id
              AND x.sequence > c.fork_sequence AND x.sequence <= c.upper
              AND ($4::text[] IS NULL OR x.kind = ANY($4::text[]))
            ORDER BY x.sequence DESC LIMIT $5::bigint
        ) e
        """
        # Each sequence asked, paired with the branch holding it, then looked up
        # by the whole primary key: what a generic plan also does (given only
        # session and branch, it may scan the branch instead).
        self.read_at = f"""{chain("$3::bigint", "$4::bigint")}
        , wanted AS MATERIALIZED (
            SELECT c.branch_id, q.sequence
            FROM chain c JOIN unnest($5::bigint[]) q(sequence)
              ON q.sequence > c.fork_sequence AND q.sequence <= c.upper
        )
        SELECT {x_cols} FROM wanted w JOIN {s}.events x
          ON x.session_id = $1 AND x.branch_id = w.branch_id AND x.sequence = w.sequence
        """
        # copy_session: one transaction of a few statements, each an INSERT ...
        # SELECT. Positions follow the source's (the order it wrote them in);
        # each run of consecutive positions on one branch is one notification,
        # "$3" being the notice prefix of (instance, target) without its "]".
        # The rows come back as EVENT_COLUMNS; the notifications run as an
        # initplan (a CTE nothing reads would never run).
        returned = event_cols
        notify = f"""
        , runs AS (
            SELECT branch_id, sequence, position,
                   position - row_number() OVER (PARTITION BY branch_id ORDER BY position) AS grp
            FROM ins
        ), n AS (
            SELECT pg_notify('{channel}', concat_ws(',',
                       $3::text || ',' || to_json(branch_id)::text,
                       min(sequence), max(sequence), min(position)) || ']')
            FROM runs GROUP BY branch_id, grp
        )
        SELECT ins.* FROM ins WHERE (SELECT count(*) FROM n) >= 0 ORDER BY position
        """
        self.copy_count = (
            f"SELECT coalesce(sum(head - fork_sequence), 0) AS events FROM {s}.branches"
            " WHERE session_id = $1"
        )
        self.copy_branches = f"""
        INSERT INTO {s}.branches (session_id, branch_id, parent_branch, fork_sequence, head,
                                  created_at, updated_at, merged_into, closed, closed_at)
        SELECT $2, branch_id, parent_branch, fork_sequence, head, now(), now(), merged_into,
               closed, closed_at
        FROM {s}.branches WHERE session_id = $1
        RETURNING {cols}"""
        self.copy_main = (
            f"INSERT INTO {s}.branches (session_id, branch_id, parent_branch, fork_sequence,"
            f" head, created_at, updated_at) VALUES ($1, 'main', NULL, 0, $2, now(), now())"
            f" RETURNING {cols}"
        )
        self.copy_events = f"""
        WITH ins AS (
            INSERT INTO {s}.events (session_id, branch_id, sequence, event_id, kind, data,
                                    metadata, recorded_at, position)
            SELECT $2, e.branch_id, e.sequence, e.event_id, e.kind, e.data, e.metadata,
                   e.recorded_at, {_XID_BASE} - 1 + row_number() OVER (ORDER BY e.position)
            FROM {s}.events e JOIN {s}.branches b
              ON b.session_id = $1 AND b.branch_id = e.branch_id
            WHERE e.session_id = $1 AND e.sequence <= b.head
            RETURNING {returned}
        ){notify}"""
        # $1 source, $2 target... but the chain reads its branch from $2: renumbered.
        history_chain = chain("1", "$5::bigint").replace("branch_id = $2", "branch_id = $4")
        self.copy_history = f"""{history_chain}, ins AS (
            INSERT INTO {s}.events (session_id, branch_id, sequence, event_id, kind, data,
                                    metadata, recorded_at, position)
            SELECT $2, 'main', x.sequence, x.event_id, x.kind, x.data, x.metadata,
                   x.recorded_at, {_XID_BASE} - 1 + row_number() OVER (ORDER BY x.sequence)
            FROM chain c JOIN {s}.events x
              ON x.session_id = $1 AND x.branch_id = c.branch_id
             AND x.sequence > c.fork_sequence AND x.sequence <= c.upper
            RETURNING {returned}
        ){notify}"""
        # One committed range of a notification: a primary-key range scan.
        self.range = (
            f"SELECT {event_cols} FROM {s}.events WHERE session_id = $1 AND branch_id = $2"
            " AND sequence >= $3 AND sequence <= $4 ORDER BY sequence"
        )
        # The logical history in one round trip: walk up the ancestors (pruning
        # those wholly below the range), then one ordered index range scan per
        # segment, each capped at the limit. Segments are disjoint in sequence, so
        # the caller orders and trims the rows (cheaper than a server-side sort).
        self.read = f"""
        WITH RECURSIVE chain (branch_id, parent_branch, fork_sequence, upper) AS (
            SELECT branch_id, parent_branch, fork_sequence, least(head, $4::bigint)
            FROM {s}.branches WHERE session_id = $1 AND branch_id = $2
          UNION ALL
            SELECT p.branch_id, p.parent_branch, p.fork_sequence,
                   least(c.upper, c.fork_sequence)
            FROM chain c JOIN {s}.branches p
              ON p.session_id = $1 AND p.branch_id = c.parent_branch
            WHERE least(c.upper, c.fork_sequence) >= $3::bigint
        )
        SELECT e.{event_cols.replace(", ", ", e.")}
        FROM chain c CROSS JOIN LATERAL (
            SELECT * FROM {s}.events x
            WHERE x.session_id = $1 AND x.branch_id = c.branch_id
              AND x.sequence > c.fork_sequence AND x.sequence >= $3::bigint
              AND x.sequence <= c.upper
            ORDER BY x.sequence LIMIT $5::bigint
        ) e
        """
        # The feed: one range scan of events_position from ``after`` to the
        # horizon of one snapshot, filters applied on the way. Each answer also
        # carries that snapshot's xmin and xmax (one row of NULL columns when
        # no record qualifies), so the caller knows whether transactions that
        # began before it asked were still open. Rows at or above the horizon
        # may still gain lower neighbours.
        feed_cols = f"session_id, {event_cols}"
        self.horizon = f"SELECT {_HORIZON} AS horizon"
        snapshot = """
        WITH h AS MATERIALIZED (
            SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
                   pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
        )
        SELECT h.xmin, h.xmax"""
        self.feed = f"""{snapshot}, e.* FROM h LEFT JOIN LATERAL (
            SELECT {feed_cols} FROM {s}.events
            WHERE position > $1::bigint AND position < h.xmin * {MAX_PER_TRANSACTION}
              AND ($3::text[] IS NULL OR kind = ANY($3::text[]))
              AND ($4::text[] IS NULL OR session_id = ANY($4::text[]))
            ORDER BY position LIMIT $2::bigint
        ) e ON true
        """
        self.feed_head = f"""{snapshot}, (
            SELECT coalesce(max(position), 0) FROM {s}.events
            WHERE position < h.xmin * {MAX_PER_TRANSACTION}
        ) AS head FROM h
        """
        self.xmin = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        # Every committed row in a position span, horizon or not: what a
        # listener re-reads after its queue overflowed or its connection dropped.
        self.span = (
            f"SELECT {feed_cols} FROM {s}.events WHERE position >= $1::bigint"
            " AND position <= $2::bigint ORDER BY position LIMIT $3::bigint"
        )
