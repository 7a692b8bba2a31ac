"""Delivery status notifications (RFC 3464, RFC 6522): reports to a message's sender.

:func:`build_dsn` writes a report about any status, for applications that route
reports themselves. :class:`DsnReporter` is what a mailer with
``Config(dsn=...)`` uses: after each attempt it decides whether the attempt
calls for a report (recipients that failed; recipients deferred past the
policy's threshold) and prepares it for the mailer's own queue, from the null
reverse-path so that a report about a report can never be sent.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from email.utils import format_datetime

from ..codes import UNDEFINED_PERMANENT, UNDEFINED_SUCCESS, UNDEFINED_TRANSIENT
from ..config import DsnPolicy
from ..errors import InvalidMessageError
from ..status import DeliveryResult, MessageStatus, RecipientStatus
from .prepared import PreparedEmail
from .preparer import Preparer

__all__ = ["DsnReporter", "build_dsn"]

log = logging.getLogger(__name__)

_ACTIONS = {
    DeliveryResult.FAILED: "failed",
    DeliveryResult.DELIVERED: "delivered",
    DeliveryResult.DEFERRED: "delayed",
    DeliveryResult.QUEUED: "delayed",
}
_DEFAULT_CODES = {
    "failed": UNDEFINED_PERMANENT,
    "delivered": UNDEFINED_SUCCESS,
    "delayed": UNDEFINED_TRANSIENT,
}
_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
_MAX_FIELD = 900


def build_dsn(
    status: MessageStatus,
    email: PreparedEmail,
    *,
    reporting_mta: str,
    recipients: Sequence[str] | None = None,
    retry_until: float | None = None,
) -> EmailMessage:
    """Build a delivery status notification about ``email`` from its ``status``.

    The report is a ``multipart/report; report-type=delivery-status``: a
    human-readable part, a ``message/delivery-status`` part (Reporting-MTA,
    Arrival-Date, then per recipient Original-Recipient, Final-Recipient, Action,
    Status, Remote-MTA and Diagnostic-Code when a server answered,
    Last-Attempt-Date, and Will-Retry-Until for a delay) and the original headers
    as ``text/rfc822-headers``. A recipient's Action follows its result:
    ``FAILED`` is ``failed``, ``DELIVERED`` is ``delivered``, anything else
    ``delayed``. Non-ASCII addresses make it ``message/global-delivery-status``
    (RFC 6533).

    It is addressed to the envelope sender, from ``MAILER-DAEMON@<reporting_mta>``.
    To send it, use the null reverse-path: ``send_email(report, mail_from="")`` is
    refused, so pass it to :func:`~mailstrom_py.prepare_email` (or
    :meth:`.Preparer.prepare`) with ``mail_from="", allow_null_sender=True``.

    Args:
        status: the message's status.
        email: the message.
        reporting_mta: the host name of the reporting system (the HELO name).
        recipients: the recipients to report on; by default all of them.
        retry_until: when retries end, for the Will-Retry-Until of delays.

    Raises:
        InvalidMessageError: the message has a null sender (a report on it would
            go nowhere, or loop), or a listed recipient is not one of its own.
    """
    return BytesParser(policy=SMTP).parsebytes(
        _report(status, email, reporting_mta, recipients, retry_until)
    )


class DsnReporter:
    """Decides which attempts call for a report and prepares the reports.

    Thread-safe: it keeps no state, so an attempt's report depends only on the
    statuses before and after it.

    Args:
        policy: when to report.
        preparer: prepares (and signs) each report as the mailer's own messages
            are prepared; its HELO name is the Reporting-MTA, and the domain of
            the report's From address and Message-ID.
        retry_until: when retries of a message first due at a given time
            end (``retry_since + max_age``), for Will-Retry-Until.
    """

    def __init__(
        self,
        policy: DsnPolicy,
        preparer: Preparer,
        *,
        retry_until: Callable[[float], float] | None = None,
    ) -> None:
        self._policy = policy
        self._preparer = preparer
        self._retry_until = retry_until

    def reports(
        self,
        email: PreparedEmail,
        before: MessageStatus,
        updates: Sequence[RecipientStatus],
        now: float,
    ) -> list[PreparedEmail]:
        """Return the report one attempt calls for, prepared for the queue, if any.

        Args:
            email: the message attempted.
            before: its status before the attempt was claimed.
            updates: the statuses the attempt recorded for its recipients.
            now: when the attempt started.

        Returns:
            No report, or one covering every recipient that failed in the attempt
            and every recipient whose deferral first crossed a delay threshold.
            Nothing ever for a message with a null sender. Never raises: a report
            that cannot be built is logged and dropped.
        """
        if not email.mail_from:
            return []
        chosen = [u for u in updates if self._calls_for_report(before, u)]
        if not chosen:
            return []
        by_address = {u.address: u for u in chosen}
        status = MessageStatus(
            before.message_id,
            tuple(by_address.get(r.address, r) for r in before.recipients),
            before.created_at,
            before.held,
            before.first_due_at,
        )
        retry_until = (
            self._retry_until(before.retry_since) if self._retry_until else None
        )
        reporting_mta = self._preparer.helo_name
        try:
            data = _report(status, email, reporting_mta, list(by_address), retry_until)
            report = self._preparer.prepare(
                data,
                mail_from="",
                allow_null_sender=True,
                rcpt_to=[email.mail_from],
                now=datetime.fromtimestamp(now, UTC),
            )
        except Exception:
            log.exception("could not build the report on %s", email.message_id)
            return []
        return [report]

    def _calls_for_report(self, before: MessageStatus, update: RecipientStatus) -> bool:
        if update.result is DeliveryResult.FAILED:
            return self._policy.on_failure
        if update.result is not DeliveryResult.DEFERRED:
            return False
        try:
            previous = before.recipient(update.address)
        except KeyError:
            return False
        # A scheduled message is late counting from when it was due.
        created = before.retry_since
        # Stateless "at most once": report the attempt that first crosses a
        # threshold, judged against the state the previous attempt left.
        was_late = previous.result is DeliveryResult.DEFERRED and self._late(
            previous.attempts, previous.last_attempt_at or created, created
        )
        is_late = self._late(
            update.attempts, update.last_attempt_at or created, created
        )
        return is_late and not was_late

    def _late(self, attempts: int, at: float, created: float) -> bool:
        count, age = self._policy.delay_after_attempts, self._policy.delay_after
        return (count is not None and attempts >= count) or (
            age is not None and at - created >= age
        )


def _report(
    status: MessageStatus,
    email: PreparedEmail,
    reporting_mta: str,
    recipients: Sequence[str] | None,
    retry_until: float | None,
) -> bytes:
    """Write the report as bytes (CRLF lines; preparing it encodes any 8-bit part)."""
    if not email.mail_from:
        raise InvalidMessageError(
            "a message with a null reverse-path gets no report (RFC 5321 §4.5.5)",
            "mail_from",
        )
    chosen = list(status.recipients if recipients is None else ())
    for address in recipients or ():
        try:
            chosen.append(status.recipient(address))
        except KeyError:
            raise InvalidMessageError(
                f"{address!r} is not a recipient of {status.message_id}", "recipients"
            ) from None
    actions = [_ACTIONS[r.result] for r in chosen]
    kind = next(
        (a for a in ("failed", "delayed", "delivered") if a in actions), "delayed"
    )
    global_dsn = not all(r.address.isascii() for r in chosen)
    boundary = f"=_report_{uuid.uuid4().hex}"

    fields = [f"Reporting-MTA: dns; {reporting_mta}"]
    fields.append(f"Arrival-Date: {_date(status.created_at)}")
    blocks = ["\r\n".join(fields)]
    lines = [
        f"This is the mail system at {reporting_mta}.",
        "",
        f"Your message {email.message_id}, sent {_date(status.created_at)}:",
        "",
    ]
    for r, action in zip(chosen, actions, strict=True):
        blocks.append(_recipient_block(r, action, global_dsn, retry_until))
        lines.append(_explain(r, action, retry_until))
    header_block = email.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    status_type = (
        "message/global-delivery-status" if global_dsn else "message/delivery-status"
    )
    text = "\r\n".join(
        [
            f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
            f"To: <{email.mail_from}>",
            f"Subject: {_SUBJECTS[kind]}",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            "Content-Type: multipart/report; report-type=delivery-status;",
            f' boundary="{boundary}"',
            "",
            "This is a delivery status notification (RFC 3464).",
            "",
            f"--{boundary}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Description: Notification",
            "",
            "\r\n".join(lines),
            "",
            f"--{boundary}",
            f"Content-Type: {status_type}",
            "Content-Description: Delivery report",
            "",
            "\r\n\r\n".join(blocks),
            "",
            f"--{boundary}",
            "Content-Type: text/rfc822-headers; charset=utf-8",
            "Content-Description: Headers of the original message",
            "",
            header_block,
            "",
            f"--{boundary}--",
            "",
        ]
    )
    return text.encode("utf-8")


def _recipient_block(
    r: RecipientStatus, action: str, global_dsn: bool, retry_until: float | None
) -> str:
    kind = "utf-8" if global_dsn else "rfc822"
    fields = [
        f"Original-Recipient: {kind}; {r.address}",
        f"Final-Recipient: {kind}; {r.address}",
        f"Action: {action}",
        f"Status: {r.status_code or _DEFAULT_CODES[action]}",
    ]
    if r.remote is not None:
        fields.append(f"Remote-MTA: dns; {_field(r.remote.host)}")
    if r.last_reply is not None:
        fields.append(f"Diagnostic-Code: smtp; {_field(str(r.last_reply))}")
    if r.last_attempt_at is not None:
        fields.append(f"Last-Attempt-Date: {_date(r.last_attempt_at)}")
    if action == "delayed" and retry_until is not None:
        fields.append(f"Will-Retry-Until: {_date(retry_until)}")
    return "\r\n".join(fields)


def _explain(r: RecipientStatus, action: str, retry_until: float | None) -> str:
    detail = r.detail or (str(r.last_reply) if r.last_reply else "no detail")
    detail = _UNSAFE.sub(" ", detail)[:_MAX_FIELD]
    if action == "failed":
        return f"- could not be delivered to {r.address}: {detail}"
    if action == "delivered":
        return f"- was delivered to {r.address}: {detail}"
    until = f"; retries go on until {_date(retry_until)}" if retry_until else ""
    return f"- is not yet delivered to {r.address}{until}: {detail}"


def _field(text: str) -> str:
    """Return text fit for one DSN field: one line of ASCII, not too long."""
    flat = _UNSAFE.sub(" ", text).encode("ascii", "replace").decode("ascii")
    return flat[:_MAX_FIELD]


def _date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, UTC))
