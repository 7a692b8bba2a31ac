"""The tables of :class:`~mailstrom_py.storage.postgres.PostgresStorage`, and
their migrations.

The tables live in a PostgreSQL schema of their own (``mailstrom`` unless told
otherwise), which every session has as its ``search_path``. Its version is in
the one-row table ``schema_version`` (what SQLite's ``PRAGMA user_version`` is
to :class:`~mailstrom_py.SqliteStorage`).
Opening the storage brings an older schema up to date under an advisory lock
held by its session, so that workers starting together migrate once. Steps of
statements run in transactions that store the version they reach (a failure
leaves the schema at the version its transaction began from); a step that
builds an index on a table in use builds it online
(:class:`~.migration.OnlineIndex`), and the version moves past it once the
index is valid.
"""

from __future__ import annotations

from psycopg import sql

from ...errors import StorageError
from .db import Connection
from .migration import Migration, OnlineIndex, build_online, exclusive, run_script
from .rows import FOLDED

__all__ = ["MIGRATIONS", "MIGRATION_LOCK", "SCHEMA_VERSION", "migrate"]

_VERSION_1 = f"""
CREATE TABLE messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id text NOT NULL UNIQUE,
    mail_from text NOT NULL,
    smtputf8 boolean NOT NULL,
    eight_bit boolean NOT NULL,
    require_tls boolean NOT NULL,
    tls_optional boolean NOT NULL,
    created_at double precision NOT NULL,
    pending integer NOT NULL,
    due_at double precision,
    held boolean NOT NULL DEFAULT false,
    reported boolean NOT NULL DEFAULT false,
    completed_at double precision,
    claim_token text,
    claim_skew double precision
) WITH (fillfactor = 90);
CREATE TABLE bodies (
    message bigint PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    data bytea NOT NULL
);
CREATE INDEX messages_due ON messages (due_at) WHERE pending > 0 AND NOT held;
CREATE INDEX messages_created ON messages (created_at, id);
CREATE INDEX messages_unreported ON messages (created_at, id)
    WHERE pending = 0 AND NOT reported;
CREATE INDEX messages_completed ON messages (completed_at) WHERE pending = 0;
CREATE TABLE recipients (
    message bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position integer NOT NULL,
    address text NOT NULL,
    domain text NOT NULL,
    result text NOT NULL DEFAULT 'queued',
    attempts integer NOT NULL DEFAULT 0,
    reply_code integer,
    reply_enhanced text,
    reply_text text,
    status_code text,
    detail text,
    last_attempt_at double precision,
    next_attempt_at double precision,
    possibly_delivered boolean NOT NULL DEFAULT false,
    remote_host text,
    remote_address text,
    remote_port integer,
    remote_tls_version text,
    remote_tls_verified boolean,
    reply_step text,
    rcpt_code integer,
    rcpt_enhanced text,
    rcpt_text text,
    PRIMARY KEY (message, position)
);
CREATE INDEX recipients_domain ON recipients (domain, message);
CREATE INDEX recipients_address ON recipients ({FOLDED}, message);
"""
# Each body is stored once, in a table of its own: the rows of messages, which
# claims and records rewrite many times, stay small (PostgreSQL keeps a value
# under about 2 kB in its row, and an update writes the whole row again), and
# no status, listing or claim reads a body.
#
# messages.pending counts the recipients still QUEUED or DEFERRED, and due_at is
# the earliest next_attempt_at among them (NULL once none is pending), so that
# claiming and the queue filters never need the recipients. completed_at is when
# the last pending recipient was recorded complete (retention counts from it).
# claim_token identifies the live claim of a message; claim_skew is how far the
# claiming worker's clock was behind the database's, to move the times it
# records onto the database's clock.

# Version 2: the TLS policy of the last session (RFC 8460 names): its type and
# domain, and the result of TLS under it, with the failure in words.
_VERSION_2_TLS_POLICY = """
ALTER TABLE recipients ADD COLUMN remote_tls_policy text;
ALTER TABLE recipients ADD COLUMN remote_tls_policy_domain text;
ALTER TABLE recipients ADD COLUMN remote_tls_result text;
ALTER TABLE recipients ADD COLUMN remote_tls_failure text
"""

# Version 3: the event journal, written in the transaction of the outcomes its
# events describe and emptied as a webhook sender acknowledges them.
_VERSION_3_EVENTS = """
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload text NOT NULL
);
"""

# Version 4: delivery controls: the suppression list, keyed by the folded
# address, and the suspended destinations; entries past their until are ignored
# and pruned.
_VERSION_4_CONTROLS = """
CREATE TABLE suppressions (
    address text PRIMARY KEY,
    reason text NOT NULL,
    since double precision NOT NULL,
    until double precision NOT NULL
);
CREATE INDEX suppressions_until ON suppressions (until);
CREATE TABLE suspensions (
    destination text PRIMARY KEY,
    reason text NOT NULL,
    since double precision NOT NULL,
    until double precision NOT NULL
)
"""

# Version 5: claims take due messages in the order (due_at, id): an index in
# that order hands them out without sorting every message that shares a due
# time (all those of one add_many).
_VERSION_5_CLAIM_ORDER = """
CREATE INDEX messages_due_order ON messages (due_at, id) WHERE pending > 0 AND NOT held;
DROP INDEX messages_due;
"""

# Version 6: when a message was first due (its scheduled time, else its creation); NULL
# in rows stored before it was kept means created_at.
_VERSION_6_FIRST_DUE = """
ALTER TABLE messages ADD COLUMN first_due_at double precision
"""

# Version 7: the queue filter by envelope sender (QueueFilter.sender) finds its
# messages through an index of the sender with ASCII letters folded, as the
# filter compares it, in the order listings come. Built online: a queue in use
# may be large.
_VERSION_7_SENDER = OnlineIndex(
    name="messages_sender",
    table="messages",
    definition="""(
    translate(mail_from, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'),
    created_at,
    id
)""",
)

# Version 8: the policy strings of the last session (RFC 8460 §4.4), for TLS
# reports built from stored statuses: a JSON array of strings, NULL when
# there are none. Rows written before read as sessions without them.
_VERSION_8_TLS_POLICY_STRINGS = """
ALTER TABLE recipients ADD COLUMN remote_tls_policy_strings text
"""

# Version 9: cached MTA-STS policies (PolicyCache), one per domain, shared by
# every worker on the queue so that a restart or a new host keeps them
# (RFC 8461 §5).
_VERSION_9_MTA_STS = """
CREATE TABLE mta_sts_policies (
    domain text PRIMARY KEY,
    policy text NOT NULL
)
"""

# Version 10: SMTP TLS report counts (TlsReportTally) per report domain, day,
# policy and failure, added by every worker on the queue, and the day before
# which the last take closed the days (one row), so that one report goes per
# report domain and day, and a restart keeps the day's counts (RFC 8460).
# Days compare byte by byte ("C"), whatever the database's collation.
_VERSION_10_TLS_REPORT_COUNTS = """
CREATE TABLE tls_session_counts (
    report_domain text NOT NULL,
    day text COLLATE "C" NOT NULL,
    digest text NOT NULL,
    policy text NOT NULL,
    failure text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (report_domain, day, digest)
);
CREATE TABLE tls_report_takes (
    id integer PRIMARY KEY CHECK (id = 1),
    before_day text COLLATE "C" NOT NULL
)
"""

#: ``MIGRATIONS[n]`` is the step that takes version ``n`` to ``n + 1``.
MIGRATIONS: tuple[Migration, ...] = (
    _VERSION_1,
    _VERSION_2_TLS_POLICY,
    _VERSION_3_EVENTS,
    _VERSION_4_CONTROLS,
    _VERSION_5_CLAIM_ORDER,
    _VERSION_6_FIRST_DUE,
    _VERSION_7_SENDER,
    _VERSION_8_TLS_POLICY_STRINGS,
    _VERSION_9_MTA_STS,
    _VERSION_10_TLS_REPORT_COUNTS,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: The key of the advisory lock a process migrating the tables holds (any
#: constant shared by every process; earlier versions took the same lock with
#: ``pg_advisory_xact_lock``).
MIGRATION_LOCK = 0x6D61696C7374726F  # "mailstro"


def migrate(
    conn: Connection, schema: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> None:
    """Create ``schema`` if need be and bring its tables to the last version of
    ``migrations``.

    ``conn`` must be in autocommit mode, its ``search_path`` ``schema``
    already. Tables that are up to date are only read (their version), with
    no lock: a role that may not create tables can open a database an
    administrator has migrated. Otherwise the session takes an advisory lock
    (waiting up to its ``statement_timeout``, which opening sets to the
    storage's ``migration_timeout``, for another process migrating,
    and returning as soon as that process brought the tables up to date), so
    that processes opening the database at once migrate it one after the
    other, and runs:

    * the steps of statements in transactions that store the version they
      reach: those before the first online index in one, each after it in
      its own; a failure leaves the tables at the version its transaction
      began from;
    * an :class:`~.migration.OnlineIndex` step outside any transaction, with
      ``CREATE INDEX CONCURRENTLY``, first dropping an invalid index of that
      name left by an interrupted build; the version moves past the step once
      the index is valid.

    A new schema is made whole in one transaction, its indexes built plainly:
    no one uses tables that did not exist.

    Raises:
        StorageError: the schema was written by a newer version of
            mailstrom_py, another process held the lock too long, or
            ``conn`` is not in autocommit mode.
        psycopg.Error: the database refused a statement (its transaction was
            rolled back; an index build left at most an invalid index).
    """
    if not conn.autocommit:
        raise StorageError("the schema's migration needs a connection in autocommit")
    latest = len(migrations)
    found = _read_version(conn, schema)
    if found is not None:
        _check_known(schema, found, latest)
        if found == latest:
            return
    with exclusive(
        conn,
        MIGRATION_LOCK,
        f"migrate schema {schema!r}",
        done=lambda: _read_version(conn, schema) == latest,
    ) as held:
        if held:
            _migrate_locked(conn, schema, migrations)


def _migrate_locked(
    conn: Connection, schema: str, migrations: tuple[Migration, ...]
) -> None:
    """:func:`migrate`'s work, under the migration lock."""
    with conn.transaction():
        stored = _version(conn, schema)
        _check_known(schema, stored, len(migrations))
        version = _advance(conn, migrations, stored, online=stored > 0)
        if version > stored:
            _store_version(conn, version)
    for step in migrations[version:]:
        if isinstance(step, OnlineIndex):
            build_online(conn, schema, step)
            with conn.transaction():
                _store_version(conn, version + 1)
        else:
            with conn.transaction():
                run_script(conn, step)
                _store_version(conn, version + 1)
        version += 1


def _advance(
    conn: Connection, migrations: tuple[Migration, ...], version: int, *, online: bool
) -> int:
    """Run the steps from ``version`` on in the caller's transaction, up to
    the first online index when ``online`` (all of them, indexes built
    plainly, otherwise); return the version reached."""
    for step in migrations[version:]:
        if isinstance(step, OnlineIndex):
            if online:
                break
            conn.execute(step.statement(concurrently=False))
        else:
            run_script(conn, step)
        version += 1
    return version


def _check_known(schema: str, version: int, latest: int) -> None:
    if version > latest:
        raise StorageError(
            f"schema {schema!r} has mailstrom_py schema version {version}, newer"
            f" than the {latest} this mailstrom_py knows; upgrade mailstrom_py"
            " to open it"
        )


def _read_version(conn: Connection, schema: str) -> int | None:
    """The schema's version; None when it has no version table yet."""
    found = conn.execute(
        "SELECT to_regclass(format('%%I.schema_version', %s::text))", (schema,)
    ).fetchone()
    if found is None or found[0] is None:
        return None
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def _store_version(conn: Connection, version: int) -> None:
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))


def _version(conn: Connection, schema: str) -> int:
    """The schema's version, creating the schema and its version table (at
    version 0) when missing."""
    version = _read_version(conn, schema)
    if version is not None:
        return version
    exists = conn.execute(
        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
    ).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
    return 0
