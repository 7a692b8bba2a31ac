"""Rows of the SQL backends as status values, and status values as rows.

SQLite and PostgreSQL keep the same columns for a recipient
(:data:`RECIPIENT_COLUMNS`) and read statuses as the same rows, so one set of
functions maps between the two for both: :func:`statuses` builds statuses
from rows of ``m.id, m.message_id, m.created_at, m.held`` followed by
``r.address``, the recipient columns and ``m.first_due_at``,
:func:`recipient_values` gives a recipient's column values, and
:func:`prepared_email` builds a message from its envelope row and body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from ..message import PreparedEmail
from ..status import (
    DeliveryResult,
    MessageStatus,
    RecipientStatus,
    Remote,
    SmtpReply,
    SmtpStep,
)
from .query import fold_case

__all__ = [
    "PENDING",
    "RECIPIENT_COLUMNS",
    "STATUSES_OF",
    "STATUS_COLUMNS",
    "prepared_email",
    "queued_values",
    "recipient_domain",
    "recipient_values",
    "statuses",
]

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
    "remote_tls_policy_strings",
)


#: The columns :func:`statuses` reads, from ``messages m`` joined with
#: ``recipients r``: the message's head, then the recipient's columns.
STATUS_COLUMNS = (
    "m.id, m.message_id, m.created_at, m.held, r.address, "
    + ", ".join(f"r.{column}" for column in RECIPIENT_COLUMNS)
    + ", m.first_due_at"
)

# Where ``m.first_due_at`` is in a row of STATUS_COLUMNS: last.
_FIRST_DUE = len(STATUS_COLUMNS.split(",")) - 1

#: The statuses of the messages a query yielding ``id, message_id, created_at,
#: held, first_due_at`` of ``messages`` returns (put in for ``{select}``, or named
#: ``{select}`` in a ``WITH``), oldest first, as rows for :func:`statuses`. It
#: never reads a body.
STATUSES_OF = (
    f"SELECT {STATUS_COLUMNS} FROM ({{select}}) m"
    " LEFT JOIN recipients r ON r.message = m.id"
    " ORDER BY m.created_at, m.id, r.position"
)

#: The results of pending recipients, as an SQL list.
PENDING = f"('{DeliveryResult.QUEUED.value}', '{DeliveryResult.DEFERRED.value}')"


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
        r.possibly_delivered,
        *server,
        reply.step.value if reply and reply.step else None,
        rcpt.code if rcpt else None,
        rcpt.enhanced if rcpt else None,
        rcpt.text if rcpt else None,
        *policy,
    )


def queued_values(due: float) -> tuple[object, ...]:
    """Return the values of :data:`RECIPIENT_COLUMNS` for a recipient just
    added, due at ``due``: those :func:`recipient_values` gives for
    ``RecipientStatus(address, next_attempt_at=due)``, without building it."""
    return (*_QUEUED_HEAD, due, *_QUEUED_TAIL)


def _remote_values(
    remote: Remote | None,
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """The ``remote_*`` values of :data:`RECIPIENT_COLUMNS`: the server's, and
    its TLS policy's (columns added later, at the end)."""
    if remote is None:
        return (None,) * 5, (None,) * 5
    server = (
        remote.host,
        remote.address,
        remote.port,
        remote.tls_version,
        remote.tls_verified,
    )
    policy = (
        remote.tls_policy,
        remote.tls_policy_domain,
        remote.tls_result,
        remote.tls_failure,
        _policy_strings_text(remote.tls_policy_strings),
    )
    return server, policy


def _policy_strings_text(strings: tuple[str, ...]) -> str | None:
    """The ``remote_tls_policy_strings`` value of a session's policy strings:
    a JSON array of strings, NULL when there are none (most sessions)."""
    if not strings:
        return None
    return json.dumps(strings, ensure_ascii=False, separators=(",", ":"))


def _policy_strings_of(value: object) -> tuple[str, ...]:
    """The policy strings a ``remote_tls_policy_strings`` value holds."""
    if value is None:
        return ()
    return tuple(str(text) for text in json.loads(str(value)))


_QUEUED = recipient_values(RecipientStatus("-", next_attempt_at=0.0))
_NEXT_AT = RECIPIENT_COLUMNS.index("next_attempt_at")
_QUEUED_HEAD, _QUEUED_TAIL = _QUEUED[:_NEXT_AT], _QUEUED[_NEXT_AT + 1 :]


def prepared_email(
    message_id: str, recipients: Iterable[str], row: Sequence[object]
) -> PreparedEmail:
    """Build a message from a row of ``mail_from, smtputf8, eight_bit,
    require_tls, tls_optional, data`` and its recipients' addresses in
    envelope order."""
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
    """Build statuses from rows of ``m.id, m.message_id, m.created_at,
    m.held, r.address``, the recipient columns, in the order of
    :data:`RECIPIENT_COLUMNS`, and ``m.first_due_at`` (NULL: as created).

    The rows come grouped by message and ordered by position within each; a
    message without recipients has one row whose recipient columns are NULL.
    """
    built: list[MessageStatus] = []
    current: tuple[object, str, float, bool, object] | None = None
    recipients: list[RecipientStatus] = []
    for row in rows:
        if current is None or row[0] != current[0]:
            if current is not None:
                built.append(_message(current, recipients))
            first = row[_FIRST_DUE]
            current = (row[0], str(row[1]), float(row[2]), bool(row[3]), first)  # type: ignore[arg-type]
            recipients = []
        if row[4] is not None:
            recipients.append(_recipient(row))
    if current is not None:
        built.append(_message(current, recipients))
    return built


def _message(
    head: tuple[object, str, float, bool, object], recipients: list[RecipientStatus]
) -> MessageStatus:
    first = head[4]
    return MessageStatus(
        message_id=head[1],
        recipients=tuple(recipients),
        created_at=head[2],
        held=head[3],
        first_due_at=None if first is None else float(first),  # type: ignore[arg-type]
    )


def _recipient(row: Sequence[object]) -> RecipientStatus:
    (address, result, attempts, code, enhanced, text, status_code, detail) = row[4:12]
    (last_at, next_at, possibly, host, ip, port, tls_version, verified) = row[12:20]
    (step, rcpt_code, rcpt_enhanced, rcpt_text) = row[20:24]
    (tls_policy, tls_policy_domain, tls_result, tls_failure, strings) = row[24:29]
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
                tls_policy_strings=_policy_strings_of(strings),
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
