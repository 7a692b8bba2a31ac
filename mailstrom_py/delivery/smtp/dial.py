"""Dialling an SMTP server and reading its greeting, before any command."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import replace

from ...codes import BAD_CONNECTION, CRYPTOGRAPHIC_FAILURE, NO_ANSWER_FROM_HOST
from ...status import Remote, SmtpReply, SmtpStep
from ..tls_policy import TlsPolicy
from .client import SmtpClient
from .failure import SessionFailure, describe_error, describe_remote

__all__ = ["close_quietly", "dial"]


def dial(smtp: SmtpClient, remote: Remote, tls: TlsPolicy) -> Remote:
    """Dial ``remote`` and read its greeting; return ``remote`` with the address
    actually connected to.

    Raises:
        SessionFailure: no connection, or a greeting other than 220; it is closed.
    """
    try:
        # smtplib checks the greeting only when the constructor connects.
        code, text = smtp.connect(tls.verify_name or remote.host, remote.port)
    except ssl.SSLError as exc:
        close_quietly(smtp)
        raise SessionFailure(
            f"TLS with {describe_remote(remote)} failed: {exc}",
            CRYPTOGRAPHIC_FAILURE,
            tls_failed=True,
            remote=remote,
        ) from exc
    except (OSError, smtplib.SMTPException) as exc:
        close_quietly(smtp)
        why = describe_error(exc)
        if not smtp.dialled:
            detail = f"cannot connect to {describe_remote(remote)}: {why}"
            raise SessionFailure(detail, NO_ANSWER_FROM_HOST, connected=False) from exc
        detail = f"no greeting from {describe_remote(remote)}: {why}"
        raise SessionFailure(detail, BAD_CONNECTION, remote=remote) from exc
    if code != 220:
        close_quietly(smtp)
        # A 5xx greeting is transient too, as in Postfix (smtp_skip_5xx_greeting):
        # it says nothing about the recipients, and another MX may take them.
        reply = SmtpReply.parse(code, text, SmtpStep.GREETING)
        detail = f"{describe_remote(remote)} greeted with {reply}"
        raise SessionFailure(detail, BAD_CONNECTION, reply, remote=remote)
    return replace(remote, address=_peer(smtp, remote.address))


def _peer(smtp: smtplib.SMTP, default: str) -> str:
    try:
        return str(smtp.sock.getpeername()[0]) if smtp.sock else default
    except OSError:
        return default


def close_quietly(smtp: smtplib.SMTP) -> None:
    """Close ``smtp``'s connection, if open, without a word; never raises."""
    try:
        smtp.close()
    except OSError:
        pass
