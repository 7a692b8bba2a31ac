"""The SQLite schema of :class:`~mailstrom_py.SqliteStorage` and its migrations
(rows become values in :mod:`mailstrom_py.storage.rows`, shared with
PostgreSQL).

The file says what it is with ``PRAGMA application_id`` and which schema it holds
with ``PRAGMA user_version``. ``MIGRATIONS[n]`` takes a database from version
``n`` to ``n + 1`` (version 0 is an empty file), so opening a file of any older
version walks it forward; a newer version is refused.
"""

from __future__ import annotations

import sqlite3

from ...errors import StorageError

__all__ = [
    "APPLICATION_ID",
    "EMAIL_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "migrate",
]

#: "MSTR": marks a file as a mailstrom_py database.
APPLICATION_ID = 0x4D535452

_VERSION_1 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('generation', 0);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    mail_from TEXT NOT NULL,
    smtputf8 INTEGER NOT NULL,
    eight_bit INTEGER NOT NULL,
    require_tls INTEGER NOT NULL,
    tls_optional INTEGER NOT NULL,
    created_at REAL NOT NULL,
    held INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL,
    due_at REAL,
    reported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_due ON messages (due_at) WHERE held = 0 AND due_at IS NOT NULL;
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX messages_unreported ON messages (id) WHERE pending = 0 AND reported = 0;
CREATE TABLE bodies (
    message INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE recipients (
    message INTEGER NOT NULL,
    position INTEGER NOT NULL,
    address TEXT NOT NULL,
    domain TEXT NOT NULL,
    result TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    reply_code INTEGER,
    reply_enhanced TEXT,
    reply_text TEXT,
    status_code TEXT,
    detail TEXT,
    last_attempt_at REAL,
    next_attempt_at REAL,
    possibly_delivered INTEGER NOT NULL,
    remote_host TEXT,
    remote_address TEXT,
    remote_port INTEGER,
    remote_tls_version TEXT,
    remote_tls_verified INTEGER,
    PRIMARY KEY (message, position)
) WITHOUT ROWID;
CREATE INDEX recipients_domain ON recipients (domain, message);
CREATE INDEX recipients_address ON recipients (address COLLATE NOCASE, message);
"""
# messages.pending counts the recipients still QUEUED or DEFERRED, and due_at is
# the earliest next_attempt_at among them (NULL once none is pending), so the
# worker's paging query and the queue filters never have to read recipients.
# Bodies live in a table of their own to keep the rows of messages small.

# Version 2 keeps the step each recorded reply answered, and the reply to the
# recipient's RCPT (its step is RCPT). Rows written before it read as replies
# with no step and no RCPT reply.
_VERSION_2 = """
ALTER TABLE recipients ADD COLUMN reply_step TEXT;
ALTER TABLE recipients ADD COLUMN rcpt_code INTEGER;
ALTER TABLE recipients ADD COLUMN rcpt_enhanced TEXT;
ALTER TABLE recipients ADD COLUMN rcpt_text TEXT
"""

# Version 3: claims. A claim's token is kept with its message until its outcome
# is recorded; its lease's end is the message's due_at meanwhile, so the
# messages_due index stays the index of what may be claimed.
_VERSION_3_CLAIMS = """
ALTER TABLE messages ADD COLUMN claim_token TEXT;
"""

# Version 4: the TLS policy of the last session (RFC 8460 names): its type and
# domain, and the result of TLS under it, with the failure in words. Rows
# written before read as sessions of no known policy.
_VERSION_4_TLS_POLICY = """
ALTER TABLE recipients ADD COLUMN remote_tls_policy TEXT;
ALTER TABLE recipients ADD COLUMN remote_tls_policy_domain TEXT;
ALTER TABLE recipients ADD COLUMN remote_tls_result TEXT;
ALTER TABLE recipients ADD COLUMN remote_tls_failure TEXT
"""

# Version 5: the event journal, written with the outcomes its events describe
# and emptied as a webhook sender acknowledges them.
_VERSION_5_EVENTS = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL
);
"""

# Version 6: delivery controls: the suppression list, keyed by the folded
# address, and the suspended destinations; entries past their until are ignored
# and pruned.
_VERSION_6_CONTROLS = """
CREATE TABLE suppressions (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    since REAL NOT NULL,
    until REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX suppressions_until ON suppressions (until);
CREATE TABLE suspensions (
    destination TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    since REAL NOT NULL,
    until REAL NOT NULL
) WITHOUT ROWID
"""

# When a message was first due (its scheduled time, else its creation); NULL
# in rows stored before it was kept means created_at.
_VERSION_7_FIRST_DUE = """
ALTER TABLE messages ADD COLUMN first_due_at REAL
"""

# The queue filter by envelope sender (QueueFilter.sender) finds its messages
# through an index of the sender compared as the filter compares it (NOCASE:
# ASCII letters without case), in the order listings come.
_VERSION_8_SENDER = """
CREATE INDEX messages_sender ON messages (mail_from COLLATE NOCASE, created_at)
"""

# Version 9: the policy strings of the last session (RFC 8460 §4.4), for TLS
# reports built from stored statuses: a JSON array of strings, NULL when
# there are none. Rows written before read as sessions without them.
_VERSION_9_TLS_POLICY_STRINGS = """
ALTER TABLE recipients ADD COLUMN remote_tls_policy_strings TEXT
"""

# Version 10: cached MTA-STS policies (PolicyCache), one per domain, shared by
# every process on the file so that a restart keeps them (RFC 8461 §5).
_VERSION_10_MTA_STS = """
CREATE TABLE mta_sts_policies (
    domain TEXT PRIMARY KEY,
    policy TEXT NOT NULL
) WITHOUT ROWID
"""

# Version 11: SMTP TLS report counts (TlsReportTally) per report domain, day,
# policy and failure, added by every worker on the file, and the day before
# which the last take closed the days (one row), so that one report goes per
# report domain and day, and a restart keeps the day's counts (RFC 8460).
_VERSION_11_TLS_REPORT_COUNTS = """
CREATE TABLE tls_session_counts (
    report_domain TEXT NOT NULL,
    day TEXT NOT NULL,
    digest TEXT NOT NULL,
    policy TEXT NOT NULL,
    failure TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (report_domain, day, digest)
) WITHOUT ROWID;
CREATE TABLE tls_report_takes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    before_day TEXT NOT NULL
)
"""

#: ``MIGRATIONS[n]`` holds the statements that take version ``n`` to ``n + 1``.
MIGRATIONS: tuple[str, ...] = (
    _VERSION_1,
    _VERSION_2,
    _VERSION_3_CLAIMS,
    _VERSION_4_TLS_POLICY,
    _VERSION_5_EVENTS,
    _VERSION_6_CONTROLS,
    _VERSION_7_FIRST_DUE,
    _VERSION_8_SENDER,
    _VERSION_9_TLS_POLICY_STRINGS,
    _VERSION_10_MTA_STS,
    _VERSION_11_TLS_REPORT_COUNTS,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the database on ``conn`` to :data:`SCHEMA_VERSION`.

    Runs inside the caller's write transaction.

    Raises:
        StorageError: the file is another application's database, or was written
            by a newer version of mailstrom_py.
    """
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if application_id not in (0, APPLICATION_ID) or (version == 0 and tables):
        raise StorageError(f"{path} is not a mailstrom_py database")
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} has schema version {version}, newer than the {SCHEMA_VERSION}"
            " this mailstrom_py knows; upgrade mailstrom_py to open it"
        )
    for script in MIGRATIONS[version:]:
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    # PRAGMA takes no parameters; both values are integers of ours.
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


#: The columns :func:`~mailstrom_py.storage.rows.prepared_email` reads, from
#: ``messages m`` joined with ``bodies b``.
EMAIL_COLUMNS = (
    "m.mail_from, m.smtputf8, m.eight_bit, m.require_tls, m.tls_optional, b.data"
)
