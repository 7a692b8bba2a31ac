"""One SMTP connection over smtplib: setup (greeting, EHLO, TLS, AUTH) and commands.

smtplib is used for its wire handling only; every step goes through here with
a deadline for the whole step (RFC 5321 §4.5.3.2), however slowly its bytes
come, and every way the link can fail (timeout, reset, end of stream, a reply
line too long) becomes one exception.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from typing import Self

from ...codes import (
    AUTH_CREDENTIALS_INVALID,
    BAD_CONNECTION,
    CRYPTOGRAPHIC_FAILURE,
    NO_ANSWER_FROM_HOST,
    OTHER_SECURITY_TRANSIENT,
    SECURITY_FEATURES_NOT_SUPPORTED,
)
from ...config import Timeouts
from ...status import Remote, SmtpReply, SmtpStep
from ..tls_policy import TlsPolicy
from .client import SmtpClient
from .failure import ConnectionLost, SessionFailure, was_reset, where, why

__all__ = ["SmtpLink"]

log = logging.getLogger(__name__)


class SmtpLink:
    """An open SMTP connection that has greeted, maybe upgraded to TLS and logged in.

    It owns the connection's setup and its command plumbing: a deadline per step,
    every failure of the link turned into :class:`ConnectionLost`. Transactions
    are :class:`~mailstrom_py.delivery.smtp.SmtpSession`'s. Not thread-safe: one
    link belongs to one delivery thread.
    """

    def __init__(
        self, smtp: SmtpClient, remote: Remote, timeouts: Timeouts, tls: TlsPolicy
    ) -> None:
        self._smtp = smtp
        self.remote = remote
        self._timeouts = timeouts
        self._alive = True
        #: The TLS policy the link was opened under.
        self.tls = tls

    @classmethod
    def open(
        cls,
        *,
        host: str,
        address: str,
        port: int,
        helo_name: str,
        timeouts: Timeouts,
        tls: TlsPolicy,
        credentials: tuple[str, str] | None = None,
        plaintext_auth: bool = False,
    ) -> Self:
        """Connect, read the greeting, say EHLO (or HELO), then set up TLS and AUTH.

        Args:
            host: the server's name, used for TLS verification and SNI.
            address: the IP address (or name) to dial.
            port: the TCP port.
            helo_name: our name in EHLO/HELO.
            timeouts: the limit of each step (see :class:`SmtpClient`).
            tls: how to use TLS. Required TLS (implicit, or STARTTLS) that
                cannot be had fails the session. Opportunistic TLS uses
                STARTTLS when offered and goes on in plaintext after a refused
                STARTTLS; a failed handshake raises a failure with
                ``tls_failed`` set, which the caller may retry in plaintext.
            credentials: ``(username, password)`` to AUTH with; only sent over TLS
                unless ``plaintext_auth`` is set.
            plaintext_auth: the user's explicit consent to send ``credentials``
                on a connection without TLS.

        Raises:
            SessionFailure: the session could not be set up; the reason is recorded
                and the connection is closed.
        """
        smtp = SmtpClient(
            helo_name, address, timeouts, tls.context if tls.implicit else None
        )
        remote = Remote(host=host, address=address, port=port)
        try:
            # smtplib checks the greeting only when the constructor connects.
            code, text = smtp.connect(tls.verify_name or host, port)
            if code != 220:
                _close(smtp)
                raise smtplib.SMTPConnectError(code, text)
        except smtplib.SMTPConnectError as exc:
            # A 5xx greeting is transient too, as in Postfix (smtp_skip_5xx_greeting):
            # it says nothing about the recipients, and another MX may take them.
            reply = SmtpReply.parse(exc.smtp_code, exc.smtp_error, SmtpStep.GREETING)
            raise SessionFailure(
                f"{where(remote)} greeted with {reply}",
                BAD_CONNECTION,
                reply,
                remote=remote,
            ) from None
        except ssl.SSLError as exc:
            _close(smtp)
            raise SessionFailure(
                f"TLS with {where(remote)} failed: {exc}",
                CRYPTOGRAPHIC_FAILURE,
                tls_failed=True,
                remote=remote,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(smtp)
            if smtp.dialled:
                raise SessionFailure(
                    f"no greeting from {where(remote)}: {why(exc)}",
                    BAD_CONNECTION,
                    remote=remote,
                ) from None
            raise SessionFailure(
                f"cannot connect to {where(remote)}: {why(exc)}",
                NO_ANSWER_FROM_HOST,
                connected=False,
            ) from None
        remote = Remote(host=host, address=_peer(smtp, address), port=port)
        session = cls(smtp, remote, timeouts, tls)
        try:
            session._hello()
            if tls.mode != "none" and not tls.implicit:
                session._starttls(tls, required=tls.mode == "required")
            if isinstance(smtp.sock, ssl.SSLSocket):
                session.remote = Remote(
                    host, remote.address, port, smtp.sock.version(), tls.verify
                )
            if credentials is not None:
                session._login(*credentials, plaintext_ok=plaintext_auth)
        except ConnectionLost as exc:
            session.close()
            raise SessionFailure(
                f"{where(remote)}: {exc}", BAD_CONNECTION, remote=session.remote
            ) from None
        except SessionFailure as failure:
            session.close()
            failure.remote = session.remote
            raise
        return session

    @property
    def features(self) -> dict[str, str]:
        """The server's ESMTP extensions: lower-case keyword -> parameters."""
        return dict(self._smtp.esmtp_features)

    @property
    def alive(self) -> bool:
        """False once the connection is known to be unusable."""
        return self._alive

    def reset(self) -> bool:
        """Abort any transaction in progress (RSET); a failure closes the session.

        Returns:
            True when the server answered 250 and the session is usable.
        """
        try:
            reply = self._command("RSET", self._timeouts.quit)
        except ConnectionLost:
            self.close()
            return False
        if reply.code != 250:
            self.close()
        return self._alive

    def close(self, *, quit_wait: float | None = None) -> None:
        """Say QUIT if the connection is up, then close it. Never raises.

        Args:
            quit_wait: wait at most this many seconds for the reply to QUIT
                (``Timeouts.quit`` at most, which is also the default).
        """
        if self._alive:
            wait = self._timeouts.quit
            if quit_wait is not None:
                wait = min(wait, quit_wait)
            try:
                self._command("QUIT", wait)
            except ConnectionLost:
                pass
            self._alive = False
        _close(self._smtp)

    def _hello(self) -> None:
        reply = self._command(
            f"EHLO {self._smtp.local_hostname}", self._timeouts.greeting, SmtpStep.EHLO
        )
        if reply.code == 250:
            self._smtp.ehlo_resp = reply.text.encode()
            self._smtp.does_esmtp = True
            self._smtp.esmtp_features = _parse_features(reply.text)
            return
        reply = self._command(
            f"HELO {self._smtp.local_hostname}", self._timeouts.greeting, SmtpStep.EHLO
        )
        if reply.code != 250:
            raise SessionFailure(
                f"{where(self.remote)} refused HELO: {reply}", BAD_CONNECTION, reply
            )
        self._smtp.helo_resp = reply.text.encode()
        self._smtp.does_esmtp = False
        self._smtp.esmtp_features = {}

    def _starttls(self, tls: TlsPolicy, *, required: bool) -> None:
        assert tls.context is not None
        if "starttls" not in self._smtp.esmtp_features:
            if required:
                raise SessionFailure(
                    f"{where(self.remote)} does not offer STARTTLS",
                    SECURITY_FEATURES_NOT_SUPPORTED,
                )
            return
        reply = self._command("STARTTLS", self._timeouts.greeting, SmtpStep.STARTTLS)
        if reply.code != 220:
            if not required and self._alive:
                # RFC 3207 §4: after a refusal the session goes on as it was.
                log.info("%s refused STARTTLS (%s)", where(self.remote), reply)
                return
            raise SessionFailure(
                f"{where(self.remote)} refused STARTTLS: {reply}",
                SECURITY_FEATURES_NOT_SUPPORTED,
                reply,
            )
        try:
            # The handshake is a step of its own, as Postfix's smtp_starttls_timeout.
            self._timeout(self._timeouts.greeting)
            self._smtp.sock = tls.context.wrap_socket(
                self._sock(), server_hostname=tls.verify_name or self.remote.host
            )
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            raise SessionFailure(
                f"TLS with {where(self.remote)} failed: {why(exc)}",
                CRYPTOGRAPHIC_FAILURE,
                tls_failed=True,
            ) from None
        # RFC 3207 §4.2: forget everything learnt before TLS, including any
        # plaintext the server (or an attacker) sent after its 220.
        self._smtp.file = None
        self._smtp.esmtp_features = {}
        self._hello()

    def _login(self, username: str, password: str, *, plaintext_ok: bool) -> None:
        if not plaintext_ok and not isinstance(self._smtp.sock, ssl.SSLSocket):
            raise SessionFailure(
                "refusing to send credentials without TLS", OTHER_SECURITY_TRANSIENT
            )
        if "auth" not in self._smtp.esmtp_features:
            raise SessionFailure(
                f"{where(self.remote)} does not offer AUTH", OTHER_SECURITY_TRANSIENT
            )
        try:
            self._timeout(self._timeouts.greeting)
            self._smtp.login(username, password)
        except smtplib.SMTPAuthenticationError as exc:
            reply = SmtpReply.parse(exc.smtp_code, exc.smtp_error, SmtpStep.AUTH)
            # Bad credentials are the sender's configuration, not the recipient's
            # fault: defer, as Postfix does by default (smtp_sasl_auth_soft_bounce).
            raise SessionFailure(
                f"{where(self.remote)} refused the credentials: {reply}",
                AUTH_CREDENTIALS_INVALID,
                reply,
            ) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise ConnectionLost(str(exc)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SessionFailure(
                f"AUTH with {where(self.remote)} failed: {why(exc)}",
                OTHER_SECURITY_TRANSIENT,
            ) from None

    # -- plumbing -----------------------------------------------------------------

    def _command(
        self, line: str, timeout: float, step: SmtpStep | None = None
    ) -> SmtpReply:
        """Send ``line`` and read its reply to ``step``, both within ``timeout``
        seconds."""
        if not self._alive:
            raise ConnectionLost("connection already closed")
        try:
            self._timeout(timeout)
            self._smtp.putcmd(line)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise ConnectionLost(why(exc)) from None
        return self._reply(None, step)

    def _write(self, lines: list[str], timeout: float, *, before: bytes = b"") -> None:
        """Send several command lines in one write (a PIPELINING group).

        ``before`` goes first in the same write: the end of a message's
        content, which RFC 2920 §3.1 lets open a group. It is not sent if the
        server has already said something or hung up: a server has nothing to
        say between its 354 and the final dot, so it has given up on the
        message, and the dot must not go out after that.
        """
        if not self._alive:
            raise ConnectionLost("connection already closed")
        if before and self._smtp.has_input():
            self._drop()
            raise ConnectionLost("the server hung up before the end of the message")
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError(f"line break in an SMTP command: {line!r}")
        commands = "".join(f"{line}\r\n" for line in lines)
        try:
            self._timeout(timeout)
            self._smtp.send(before + commands.encode(self._smtp.command_encoding))
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise ConnectionLost(why(exc)) from None

    def _step(
        self, line: str, pipelined: bool, timeout: float, step: SmtpStep
    ) -> SmtpReply:
        """The reply to ``line``: read it if already sent in a batch, else send it."""
        if pipelined:
            return self._reply(timeout, step)
        return self._command(line, timeout, step)

    def _reply(
        self, timeout: float | None = None, step: SmtpStep | None = None
    ) -> SmtpReply:
        """Read the next reply, to ``step``: a step of ``timeout`` seconds, or the
        end of the step under way when None."""
        try:
            if timeout is not None:
                self._timeout(timeout)
            code, text = self._smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise ConnectionLost(why(exc), reset=was_reset(exc)) from None
        reply = SmtpReply.parse(code, text, step)
        if code == 421 or not 200 <= code <= 599:
            # RFC 5321 §3.8: a 421 closes the channel. A reply that has no
            # reply code (RFC 5321 §4.2: 2yz to 5yz) leaves the conversation
            # out of step, what comes next may answer an earlier command: the
            # connection is never used again.
            self._drop()
        return reply

    def _timeout(self, seconds: float) -> None:
        """Start a step: the reads and writes until the next one must all end
        within ``seconds`` from now."""
        self._smtp.step(seconds)

    def _sock(self) -> socket.socket:
        sock = self._smtp.sock
        if sock is None:
            raise OSError("not connected")
        return sock

    def _drop(self) -> None:
        self._alive = False
        _close(self._smtp)


def _parse_features(text: str) -> dict[str, str]:
    """Parse an EHLO reply's lines after the first into smtplib's feature dict."""
    features: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            key = keyword.lower()
            features[key] = (
                f"{features[key]} {params}".strip() if key in features else params
            )
    return features


def _peer(smtp: smtplib.SMTP, default: str) -> str:
    try:
        return str(smtp.sock.getpeername()[0]) if smtp.sock else default
    except OSError:
        return default


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.close()
    except OSError:
        pass
