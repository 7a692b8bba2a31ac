"""The SQLite schema of :class:`~mailstrom_py.SqliteStorage`, its migrations, and
the mapping between rows and status values.

The file says what it is with ``PRAGMA application_id`` and which schema it holds
with ``PRAGMA user_version``. ``MIGRATIONS[n]`` takes a database from version
``n`` to ``n + 1`` (version 0 is an empty file), so opening a file of any older
version walks it forward; a newer version is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from ...errors import StorageError
from ...message import PreparedEmail
from ...status import (
    DeliveryResult,
    MessageStatus,
    RecipientStatus,
    Remote,
    SmtpReply,
    SmtpStep,
)
from ..query import fold_case

__all__ = [
    "APPLICATION_ID",
    "EMAIL_COLUMNS",
    "MIGRATIONS",
    "PENDING",
    "RECIPIENT_COLUMNS",
    "SCHEMA_VERSION",
    "STATUSES_OF",
    "STATUS_COLUMNS",
    "migrate",
    "prepared_email",
    "recipient_domain",
    "recipient_values",
    "statuses",
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

#: ``MIGRATIONS[n]`` holds the statements that take version ``n`` to ``n + 1``.
MIGRATIONS: tuple[str, ...] = (
    _VERSION_1,
    _VERSION_2,
    _VERSION_3_CLAIMS,
    _VERSION_4_TLS_POLICY,
    _VERSION_5_EVENTS,
    _VERSION_6_CONTROLS,
)
SCHEMA_VERSION = len(MIGRATIONS)

#: The columns :func:`statuses` reads, from ``messages m`` joined with
#: ``recipients r``.
STATUS_COLUMNS = (
    "m.id, m.message_id, m.created_at, m.held, r.address, r.result, r.attempts,"
    " r.reply_code, r.reply_enhanced, r.reply_text, r.status_code, r.detail,"
    " r.last_attempt_at, r.next_attempt_at, r.possibly_delivered, r.remote_host,"
    " r.remote_address, r.remote_port, r.remote_tls_version, r.remote_tls_verified,"
    " r.reply_step, r.rcpt_code, r.rcpt_enhanced, r.rcpt_text,"
    " r.remote_tls_policy, r.remote_tls_policy_domain, r.remote_tls_result,"
    " r.remote_tls_failure"
)

#: The query for the statuses of the messages a ``SELECT ... FROM messages m``
#: (put in for ``{select}``) returns, as rows for :func:`statuses`.
STATUSES_OF = (
    f"SELECT {STATUS_COLUMNS} FROM ({{select}}) m"
    " LEFT JOIN recipients r ON r.message = m.id"
    " ORDER BY m.created_at, m.id, r.position"
)

#: The results of pending recipients, as an SQL list.
PENDING = f"('{DeliveryResult.QUEUED.value}', '{DeliveryResult.DEFERRED.value}')"

#: The recipient columns :func:`recipient_values` fills, in its order.
RECIPIENT_COLUMNS = (
    "result",
    "attempts",
    "reply_code",
    "reply_enhanced",
    "reply_text",
    "status_code",
    "detail",
    "last_attempt_at",
    "next_attempt_at",
    "possibly_delivered",
    "remote_host",
    "remote_address",
    "remote_port",
    "remote_tls_version",
    "remote_tls_verified",
    "reply_step",
    "rcpt_code",
    "rcpt_enhanced",
    "rcpt_text",
    "remote_tls_policy",
    "remote_tls_policy_domain",
    "remote_tls_result",
    "remote_tls_failure",
)


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


def recipient_values(r: RecipientStatus) -> tuple[object, ...]:
    """Return the values of :data:`RECIPIENT_COLUMNS` for ``r``."""
    reply, rcpt = r.last_reply, r.rcpt_reply
    server, policy = _remote_values(r.remote)
    return (
        r.result.value,
        r.attempts,
        reply.code if reply else None,
        reply.enhanced if reply else None,
        reply.text if reply else None,
        r.status_code,
        r.detail,
        r.last_attempt_at,
        r.next_attempt_at,
        int(r.possibly_delivered),
        *server,
        reply.step.value if reply and reply.step else None,
        rcpt.code if rcpt else None,
        rcpt.enhanced if rcpt else None,
        rcpt.text if rcpt else None,
        *policy,
    )


def _remote_values(
    remote: Remote | None,
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """The ``remote_*`` values of :data:`RECIPIENT_COLUMNS`: the server's, and
    its TLS policy's (columns added later, at the end)."""
    if remote is None:
        return (None,) * 5, (None,) * 4
    server = (
        remote.host,
        remote.address,
        remote.port,
        remote.tls_version,
        int(remote.tls_verified),
    )
    policy = (
        remote.tls_policy,
        remote.tls_policy_domain,
        remote.tls_result,
        remote.tls_failure,
    )
    return server, policy


#: The columns :func:`prepared_email` reads, from ``messages m`` joined with
#: ``bodies b``.
EMAIL_COLUMNS = (
    "m.mail_from, m.smtputf8, m.eight_bit, m.require_tls, m.tls_optional, b.data"
)


def prepared_email(
    message_id: str, recipients: Iterable[str], row: Sequence[object]
) -> PreparedEmail:
    """Build a message from a row of :data:`EMAIL_COLUMNS` and its recipients'
    addresses in envelope order."""
    mail_from, smtputf8, eight_bit, require_tls, tls_optional, data = row
    return PreparedEmail(
        message_id=message_id,
        mail_from=str(mail_from),
        recipients=tuple(recipients),
        data=bytes(data),  # type: ignore[call-overload]
        smtputf8=bool(smtputf8),
        eight_bit=bool(eight_bit),
        require_tls=bool(require_tls),
        tls_optional=bool(tls_optional),
    )


def recipient_domain(address: str) -> str:
    """Return the value of the ``domain`` column for ``address``."""
    return fold_case(address.rpartition("@")[2])


def statuses(rows: Iterable[Sequence[object]]) -> list[MessageStatus]:
    """Build statuses from rows of :data:`STATUS_COLUMNS`.

    The rows come grouped by message and ordered by position within each; a
    message without recipients has one row whose recipient columns are NULL.
    """
    built: list[MessageStatus] = []
    current: tuple[object, str, float, bool] | None = None
    recipients: list[RecipientStatus] = []
    for row in rows:
        if current is None or row[0] != current[0]:
            if current is not None:
                built.append(_message(current, recipients))
            current = (row[0], str(row[1]), float(row[2]), bool(row[3]))  # type: ignore[arg-type]
            recipients = []
        if row[4] is not None:
            recipients.append(_recipient(row))
    if current is not None:
        built.append(_message(current, recipients))
    return built


def _message(
    head: tuple[object, str, float, bool], recipients: list[RecipientStatus]
) -> MessageStatus:
    return MessageStatus(
        message_id=head[1],
        recipients=tuple(recipients),
        created_at=head[2],
        held=head[3],
    )


def _recipient(row: Sequence[object]) -> RecipientStatus:
    (address, result, attempts, code, enhanced, text, status_code, detail) = row[4:12]
    (last_at, next_at, possibly, host, ip, port, tls_version, verified) = row[12:20]
    (step, rcpt_code, rcpt_enhanced, rcpt_text) = row[20:24]
    (tls_policy, tls_policy_domain, tls_result, tls_failure) = row[24:28]
    return RecipientStatus(
        address=str(address),
        result=DeliveryResult(str(result)),
        attempts=int(attempts),  # type: ignore[call-overload]
        last_reply=_reply(code, enhanced, text, step),
        status_code=_text(status_code),
        detail=_text(detail),
        last_attempt_at=_time(last_at),
        next_attempt_at=_time(next_at),
        possibly_delivered=bool(possibly),
        remote=(
            Remote(
                host=str(host),
                address=str(ip),
                port=int(port),  # type: ignore[call-overload]
                tls_version=_text(tls_version),
                tls_verified=bool(verified),
                tls_policy=_text(tls_policy),
                tls_policy_domain=_text(tls_policy_domain),
                tls_result=_text(tls_result),
                tls_failure=_text(tls_failure),
            )
            if host is not None
            else None
        ),
        rcpt_reply=_reply(rcpt_code, rcpt_enhanced, rcpt_text, SmtpStep.RCPT.value),
    )


def _reply(
    code: object, enhanced: object, text: object, step: object
) -> SmtpReply | None:
    if code is None:
        return None
    return SmtpReply(
        int(code),  # type: ignore[call-overload]
        _text(enhanced),
        str(text),
        None if step is None else SmtpStep(str(step)),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _time(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
