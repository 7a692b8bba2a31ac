"""One SMTP connection over smtplib: setup (greeting, EHLO, TLS, AUTH) and commands.

smtplib is used for its wire handling only; every step goes through here with
a deadline for the whole step (RFC 5321 §4.5.3.2), however slowly its bytes
come, and every way the link can fail (timeout, reset, end of stream, a reply
line too long) becomes one exception.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from typing import Self

from ...codes import (
    AUTH_CREDENTIALS_INVALID,
    BAD_CONNECTION,
    CRYPTOGRAPHIC_FAILURE,
    OTHER_SECURITY_TRANSIENT,
    SECURITY_FEATURES_NOT_SUPPORTED,
)
from ...config import Timeouts
from ...status import Remote, SmtpReply, SmtpStep
from ..tls_policy import TlsPolicy
from .client import SmtpClient, parse_features
from .dial import close_quietly, dial
from .failure import (
    ConnectionLost,
    SessionFailure,
    describe_error,
    describe_remote,
    was_reset,
)
from .peer import (
    STARTTLS_NOT_SUPPORTED,
    VALIDATION_FAILURE,
    dane_mismatch,
    failed,
    handshake_result,
    held_to,
    secured,
)

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
        #: The server; once TLS is up, with its version and verification.
        self.remote = remote
        #: The server in words (``host[address]:port``), for details and logs.
        self.label = describe_remote(remote)
        #: The limit of each step.
        self.timeouts = timeouts
        #: The TLS policy the link was opened under.
        self.tls = tls
        self._alive = True

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
            host: the server's name, used for TLS verification and SNI (unless
                ``tls.verify_name`` says otherwise, as the TLSA base domain of
                a DANE session does).
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
        implicit = tls.context if tls.implicit else None
        smtp = SmtpClient(helo_name, address, timeouts, implicit)
        remote = dial(smtp, Remote(host=host, address=address, port=port), tls)
        link = cls(smtp, held_to(remote, tls), timeouts, tls)
        try:
            link._set_up(credentials, plaintext_auth)
        except SessionFailure:
            link.close()
            raise
        return link

    @property
    def features(self) -> Mapping[str, str]:
        """The server's ESMTP extensions: lower-case keyword -> parameters."""
        return self._smtp.esmtp_features

    @property
    def alive(self) -> bool:
        """False once the connection is known to be unusable."""
        return self._alive

    def reset(self) -> bool:
        """Abort any transaction in progress (RSET); a failure closes the link.

        Returns:
            True when the server answered 250 and the link is usable.
        """
        try:
            reply = self.command("RSET", self.timeouts.quit)
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
            wait = self.timeouts.quit
            if quit_wait is not None:
                wait = min(wait, quit_wait)
            try:
                self.command("QUIT", wait)
            except ConnectionLost:
                pass
            self._alive = False
        close_quietly(self._smtp)

    # -- setting up ---------------------------------------------------------------

    def _set_up(self, credentials: tuple[str, str] | None, plaintext_ok: bool) -> None:
        """Say EHLO, then set up TLS and AUTH as asked.

        Raises:
            SessionFailure: the session cannot be used; it names :attr:`remote`.
        """
        try:
            self._hello()
            if self.tls.mode != "none" and not self.tls.implicit:
                self._starttls(required=self.tls.mode == "required")
            sock = self._smtp.sock
            if isinstance(sock, ssl.SSLSocket):
                self.remote = secured(self.remote, self.tls, sock)
            if credentials is not None:
                self._login(*credentials, plaintext_ok=plaintext_ok)
        except ConnectionLost as exc:
            raise self._failure(f"{self.label}: {exc}", BAD_CONNECTION) from exc

    def _hello(self) -> None:
        name = self._smtp.local_hostname
        reply = self.command(f"EHLO {name}", self.timeouts.greeting, SmtpStep.EHLO)
        if reply.code == 250:
            self._smtp.ehlo_resp = reply.text.encode()
            self._smtp.does_esmtp = True
            self._smtp.esmtp_features = parse_features(reply.text)
            return
        reply = self.command(f"HELO {name}", self.timeouts.greeting, SmtpStep.EHLO)
        if reply.code != 250:
            detail = f"{self.label} refused HELO: {reply}"
            raise self._failure(detail, BAD_CONNECTION, reply)
        self._smtp.helo_resp = reply.text.encode()
        self._smtp.does_esmtp = False
        self._smtp.esmtp_features = {}

    def _starttls(self, *, required: bool) -> None:
        context = self.tls.context
        assert context is not None  # a policy with TLS has a context
        if "starttls" not in self._smtp.esmtp_features:
            if required:
                detail = f"{self.label} does not offer STARTTLS"
                self.remote = failed(self.remote, STARTTLS_NOT_SUPPORTED, detail)
                raise self._failure(detail, SECURITY_FEATURES_NOT_SUPPORTED)
            return
        reply = self.command("STARTTLS", self.timeouts.greeting, SmtpStep.STARTTLS)
        if reply.code != 220:
            if not required and self._alive:
                # RFC 3207 §4: after a refusal the session goes on as it was.
                log.info("%s refused STARTTLS (%s)", self.label, reply)
                return
            detail = f"{self.label} refused STARTTLS: {reply}"
            self.remote = failed(self.remote, STARTTLS_NOT_SUPPORTED, detail)
            raise self._failure(detail, SECURITY_FEATURES_NOT_SUPPORTED, reply)
        name = self.tls.verify_name or self.remote.host
        try:
            # The handshake is a step of its own, as Postfix's smtp_starttls_timeout.
            secure = self._smtp.secure(context, name, self.timeouts.greeting)
        except (OSError, ssl.SSLError) as exc:
            self.drop()
            detail = f"TLS with {self.label} failed: {describe_error(exc)}"
            self.remote = failed(self.remote, handshake_result(exc), detail)
            raise self._failure(detail, CRYPTOGRAPHIC_FAILURE, tls_failed=True) from exc
        mismatch = dane_mismatch(self.tls, secure, self.remote.host)
        if mismatch is not None:
            self.drop()
            detail = f"TLS with {self.label} failed: {mismatch}"
            self.remote = failed(self.remote, VALIDATION_FAILURE, detail)
            raise self._failure(detail, CRYPTOGRAPHIC_FAILURE, tls_failed=True)
        # RFC 3207 §4.2: forget everything learnt before TLS, including any
        # plaintext the server (or an attacker) sent after its 220 (which
        # secure() has dropped).
        self._smtp.esmtp_features = {}
        self._hello()

    def _login(self, username: str, password: str, *, plaintext_ok: bool) -> None:
        if not plaintext_ok and not isinstance(self._smtp.sock, ssl.SSLSocket):
            detail = "refusing to send credentials without TLS"
            raise self._failure(detail, OTHER_SECURITY_TRANSIENT)
        if "auth" not in self._smtp.esmtp_features:
            detail = f"{self.label} does not offer AUTH"
            raise self._failure(detail, OTHER_SECURITY_TRANSIENT)
        try:
            self._start_step(self.timeouts.greeting)
            self._smtp.login(username, password)
        except smtplib.SMTPAuthenticationError as exc:
            reply = SmtpReply.parse(exc.smtp_code, exc.smtp_error, SmtpStep.AUTH)
            # Bad credentials are the sender's configuration, not the recipient's
            # fault: defer, as Postfix does by default (smtp_sasl_auth_soft_bounce).
            detail = f"{self.label} refused the credentials: {reply}"
            raise self._failure(detail, AUTH_CREDENTIALS_INVALID, reply) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise ConnectionLost(str(exc)) from exc
        except (OSError, smtplib.SMTPException) as exc:
            detail = f"AUTH with {self.label} failed: {describe_error(exc)}"
            raise self._failure(detail, OTHER_SECURITY_TRANSIENT) from exc

    def _failure(
        self,
        detail: str,
        status_code: str,
        reply: SmtpReply | None = None,
        *,
        tls_failed: bool = False,
    ) -> SessionFailure:
        """A failure to set the session up, at :attr:`remote` as it stands."""
        return SessionFailure(
            detail, status_code, reply, tls_failed=tls_failed, remote=self.remote
        )

    # -- commands -----------------------------------------------------------------

    def command(
        self, line: str, timeout: float, step: SmtpStep | None = None
    ) -> SmtpReply:
        """Send ``line`` and read its reply to ``step``, both within ``timeout``
        seconds.

        Raises:
            ConnectionLost: the link failed; it is closed.
        """
        if not self._alive:
            raise ConnectionLost("connection already closed")
        try:
            self._start_step(timeout)
            self._smtp.putcmd(line)
        except (OSError, smtplib.SMTPException) as exc:
            self.drop()
            raise ConnectionLost(describe_error(exc)) from exc
        return self.reply(None, step)

    def exchange(
        self, line: str, pipelined: bool, timeout: float, step: SmtpStep
    ) -> SmtpReply:
        """The reply to ``line``: read it if ``pipelined`` (already written in a
        group), else send it first.

        Raises:
            ConnectionLost: the link failed; it is closed.
        """
        if pipelined:
            return self.reply(timeout, step)
        return self.command(line, timeout, step)

    def write(self, lines: list[str], timeout: float, *, before: bytes = b"") -> None:
        """Send several command lines in one write (a PIPELINING group).

        ``before`` goes first in the same write: the end of a message's
        content, which RFC 2920 §3.1 lets open a group. It is not sent if the
        server has already said something or hung up: a server has nothing to
        say between its 354 and the final dot, so it has given up on the
        message, and the dot must not go out after that.

        Raises:
            ConnectionLost: nothing or not all was written; the link is closed.
            ValueError: a line holds a line break.
        """
        if not self._alive:
            raise ConnectionLost("connection already closed")
        if before and self._smtp.has_input():
            self.drop()
            raise ConnectionLost("the server hung up before the end of the message")
        commands = b""
        if lines:
            text = "".join(lines)
            if "\r" in text or "\n" in text:
                line = next(li for li in lines if "\r" in li or "\n" in li)
                raise ValueError(f"line break in an SMTP command: {line!r}")
            text = "\r\n".join(lines)
            commands = f"{text}\r\n".encode(self._smtp.command_encoding)
        try:
            self._smtp.step(timeout)
            self._smtp.send(before + commands)
        except (OSError, smtplib.SMTPException) as exc:
            self.drop()
            raise ConnectionLost(describe_error(exc)) from exc

    def reply(
        self, timeout: float | None = None, step: SmtpStep | None = None
    ) -> SmtpReply:
        """Read the next reply, to ``step``: a step of ``timeout`` seconds, or the
        end of the step under way when None.

        Raises:
            ConnectionLost: the link failed; it is closed.
        """
        try:
            if timeout is not None:
                self._smtp.step(timeout)
            code, text = self._smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self.drop()
            raise ConnectionLost(describe_error(exc), reset=was_reset(exc)) from exc
        reply = SmtpReply.parse(code, text, step)
        if code == 421 or not 200 <= code <= 599:
            # RFC 5321 §3.8: a 421 closes the channel. A reply that has no
            # reply code (RFC 5321 §4.2: 2yz to 5yz) leaves the conversation
            # out of step, what comes next may answer an earlier command: the
            # connection is never used again.
            self.drop()
        return reply

    def end_empty_data(self) -> None:
        """After a 354 to a DATA that should have been refused, send the final
        dot alone and read its reply: the server discards a message that has
        no recipients.

        Raises:
            ConnectionLost: the link failed; it is closed.
        """
        try:
            self._smtp.send(b".\r\n")
        except (OSError, smtplib.SMTPException) as exc:
            self.drop()
            raise ConnectionLost(describe_error(exc)) from exc
        self.reply(self.timeouts.data_done)

    def use_encoding(self, encoding: str) -> None:
        """Encode the command lines that follow in ``encoding`` (UTF-8 for
        SMTPUTF8, else ASCII)."""
        self._smtp.command_encoding = encoding

    def drop(self) -> None:
        """Close the connection without a word: it is out of step or gone."""
        self._alive = False
        close_quietly(self._smtp)

    def _start_step(self, seconds: float) -> None:
        """Start a step: the reads and writes until the next one must all end
        within ``seconds`` from now."""
        self._smtp.step(seconds)
