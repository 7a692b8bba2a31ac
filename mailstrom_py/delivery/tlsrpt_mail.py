"""An SMTP TLS report as an email (RFC 8460 §5.3): the gzip'd JSON report
attached to a ``multipart/report; report-type="tlsrpt"`` message."""

from __future__ import annotations

import datetime
import gzip
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime

from .tlsrpt import SessionResult, report_json

__all__ = ["report_email"]


def report_email(
    report_domain: str,
    results: Sequence[SessionResult],
    *,
    submitter: str,
    sender: str,
    to: Sequence[str],
    report_id: str,
    start: datetime.datetime,
    end: datetime.datetime,
) -> EmailMessage:
    """The report of ``results`` to ``report_domain``, from ``sender`` on
    behalf of ``submitter`` (our host name) to ``to``.

    ``report_domain`` is the domain whose ``_smtp._tls`` record gave ``to``;
    it names the report (TLS-Report-Domain, Subject, file name, RFC 8460
    §5.3). The policy domain of each result's policy, written inside the
    report, may be another (a DANE session's TLSA base domain).
    ``start`` and ``end`` are aware datetimes bounding the period reported.
    """
    body = report_json(
        results,
        organization_name=submitter,
        contact_info=sender,
        report_id=report_id,
        start=start,
        end=end,
    ).encode("utf-8")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = (
        f"Report Domain: {report_domain} Submitter: {submitter}"
        f" Report-ID: <{report_id}>"
    )
    message["Date"] = format_datetime(end)
    message["TLS-Report-Domain"] = report_domain
    message["TLS-Report-Submitter"] = submitter
    message.set_content(
        f"This is an aggregate TLS report from {submitter} for {report_domain}"
        f" (RFC 8460), {start:%Y-%m-%d} to {end:%Y-%m-%d}.\n"
    )
    stamp = f"{int(start.timestamp())}!{int(end.timestamp())}"
    message.add_attachment(
        gzip.compress(body, mtime=0),
        maintype="application",
        subtype="tlsrpt+gzip",
        filename=f"{submitter}!{report_domain}!{stamp}!{report_id}.json.gz",
    )
    message.set_type("multipart/report")
    message.set_param("report-type", "tlsrpt")
    return message
