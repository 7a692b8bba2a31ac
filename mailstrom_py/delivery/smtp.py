"""One SMTP session over smtplib, with a result for every recipient.

smtplib's ``sendmail`` is all-or-nothing and cannot tell a connection lost before
the final dot (safe to retry) from one lost after it (possibly delivered). This
module drives the conversation one command at a time instead: its own timeout for
each step (RFC 5321 §4.5.3.2), one RCPT per recipient with its own reply, and the
protocol phase tracked so each failure is classified as reliability rules demand.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Sequence

from ..config import Timeouts
from ..message import PreparedEmail
from ..requiretls import REQUIRETLS_FAILED, requiretls_refusal
from ..retry import classify_reply, status_code_for
from ..status import DeliveryResult, Remote, SmtpReply
from .base import Outcome

__all__ = ["SessionFailure", "SmtpSession", "StaleSessionError"]

log = logging.getLogger(__name__)

_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


class SessionFailure(Exception):
    """Raised when a session cannot be opened or goes down before a transaction.

    Every recipient of the transaction shares the failure. ``status_code`` and the
    optional ``reply`` say why; ``permanent`` is true only when the cause cannot
    pass (never for connection or greeting trouble). ``connected`` is false when
    no TCP connection was made (refused, unreachable, timed out), ``tls_failed``
    true when the TLS handshake failed, and ``remote`` names the server when a
    connection was made.
    """

    def __init__(
        self,
        detail: str,
        status_code: str,
        reply: SmtpReply | None = None,
        *,
        permanent: bool = False,
        connected: bool = True,
        tls_failed: bool = False,
        remote: Remote | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.reply = reply
        self.permanent = permanent
        self.connected = connected
        self.tls_failed = tls_failed
        self.remote = remote


class StaleSessionError(SessionFailure):
    """Raised by :meth:`SmtpSession.send` when a kept connection turns out closed.

    Nothing of the message was accepted: open a new session and send again.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail, "4.4.2")


class _Lost(Exception):
    """The connection failed (timeout, reset, EOF, garbage) in the middle of a step."""


class _Smtp(smtplib.SMTP):
    """smtplib.SMTP that dials a given address and times connect apart from replies.

    ``connect(host, port)`` keeps ``host`` as the name TLS verifies and sends in SNI
    while dialling ``address``, so a pre-resolved MX address is still checked
    against the MX name rather than the IP.
    """

    def __init__(
        self,
        helo_name: str,
        address: str,
        timeouts: Timeouts,
        implicit_tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(local_hostname=helo_name, timeout=timeouts.greeting)
        self._address = address
        self._timeouts = timeouts
        self._implicit_tls = implicit_tls
        self.dialled = False

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((self._address, port), self._timeouts.connect)
        # Commands are small writes each awaiting a reply; Nagle would hold them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dialled = True
        try:
            if self._implicit_tls is not None:
                sock = self._implicit_tls.wrap_socket(sock, server_hostname=host)
            sock.settimeout(self._timeouts.greeting)
        except BaseException:
            sock.close()
            raise
        return sock


class SmtpSession:
    """An open SMTP connection that has greeted, maybe upgraded to TLS and logged in.

    Open one with :meth:`open`; run transactions with :meth:`send`; end it with
    :meth:`close`. Not thread-safe: one session belongs to one delivery thread.
    """

    def __init__(self, smtp: _Smtp, remote: Remote, timeouts: Timeouts) -> None:
        self._smtp = smtp
        self._server_name = remote.host
        self.remote = remote
        self._timeouts = timeouts
        self._alive = True
        #: How many messages :meth:`send` has carried.
        self.messages = 0
        #: The ``tls`` mode the session was opened with.
        self.tls_mode = "none"
        self._maybe_stale = False

    @classmethod
    def open(
        cls,
        *,
        host: str,
        address: str,
        port: int,
        helo_name: str,
        timeouts: Timeouts,
        tls: str,
        tls_context: ssl.SSLContext | None,
        credentials: tuple[str, str] | None = None,
    ) -> SmtpSession:
        """Connect, read the greeting, say EHLO (or HELO), then set up TLS and AUTH.

        Args:
            host: the server's name, used for TLS verification and SNI.
            address: the IP address (or name) to dial.
            port: the TCP port.
            helo_name: our name in EHLO/HELO.
            timeouts: per-step timeouts.
            tls: ``"implicit"``, ``"starttls"`` (required: failure aborts),
                ``"opportunistic"`` (STARTTLS when offered; a refused STARTTLS
                goes on in plaintext; a failed handshake raises a failure with
                ``tls_failed`` set, which the caller may retry in plaintext) or
                ``"none"``.
            tls_context: the client context for TLS; required unless ``tls="none"``.
            credentials: ``(username, password)`` to AUTH with; only ever sent over TLS.

        Raises:
            SessionFailure: the session could not be set up; the reason is recorded
                and the connection is closed.
        """
        smtp = _Smtp(
            helo_name, address, timeouts, tls_context if tls == "implicit" else None
        )
        remote = Remote(host=host, address=address, port=port)
        try:
            # smtplib checks the greeting only when the constructor connects.
            code, text = smtp.connect(host, port)
            if code != 220:
                _close(smtp)
                raise smtplib.SMTPConnectError(code, text)
        except smtplib.SMTPConnectError as exc:
            # A 5xx greeting is transient too, as in Postfix (smtp_skip_5xx_greeting):
            # it says nothing about the recipients, and another MX may take them.
            reply = SmtpReply.parse(exc.smtp_code, exc.smtp_error)
            raise SessionFailure(
                f"{_where(remote)} greeted with {reply}", "4.4.2", reply, remote=remote
            ) from None
        except ssl.SSLError as exc:
            _close(smtp)
            raise SessionFailure(
                f"TLS with {_where(remote)} failed: {exc}",
                "4.7.5",
                tls_failed=True,
                remote=remote,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(smtp)
            if smtp.dialled:
                raise SessionFailure(
                    f"no greeting from {_where(remote)}: {_why(exc)}",
                    "4.4.2",
                    remote=remote,
                ) from None
            raise SessionFailure(
                f"cannot connect to {_where(remote)}: {_why(exc)}",
                "4.4.1",
                connected=False,
            ) from None
        remote = Remote(host=host, address=_peer(smtp, address), port=port)
        session = cls(smtp, remote, timeouts)
        session.tls_mode = tls
        try:
            session._hello()
            if tls in ("starttls", "opportunistic"):
                session._starttls(tls_context, required=tls == "starttls")
            if isinstance(smtp.sock, ssl.SSLSocket):
                assert tls_context is not None
                session.remote = Remote(
                    host,
                    remote.address,
                    port,
                    smtp.sock.version(),
                    _verifies(tls_context),
                )
            if credentials is not None:
                session._login(*credentials)
        except _Lost as exc:
            session.close()
            raise SessionFailure(
                f"{_where(remote)}: {exc}", "4.4.2", remote=session.remote
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

    def send(self, email: PreparedEmail, recipients: Sequence[str]) -> list[Outcome]:
        """Send ``email`` to ``recipients`` and return one outcome per recipient.

        Recipients a server defers with "too many recipients" (452, or 552 which
        RFC 5321 §4.5.3.1.10 says to treat alike) are sent in a further transaction
        on the same connection.

        Raises:
            StaleSessionError: the session was kept from an earlier message and
                its connection turned out closed before MAIL was answered;
                nothing was accepted. Any other trouble is an outcome.
        """
        self.messages += 1
        self._maybe_stale = self.messages > 1
        outcomes: list[Outcome] = []
        pending = list(recipients)
        while pending and self._alive:
            done, pending = self._transaction(email, pending)
            self._maybe_stale = False
            outcomes.extend(done)
            if not any(o.result is DeliveryResult.DELIVERED for o in done):
                break
        outcomes.extend(
            self._outcome(a, DeliveryResult.DEFERRED, "4.5.3", "too many recipients")
            for a in pending
        )
        return outcomes

    def reset(self) -> bool:
        """Abort any transaction in progress (RSET); a failure closes the session.

        Returns:
            True when the server answered 250 and the session is usable.
        """
        try:
            reply = self._command("RSET", self._timeouts.quit)
        except _Lost:
            self.close()
            return False
        if reply.code != 250:
            self.close()
        return self._alive

    def close(self) -> None:
        """Say QUIT if the connection is up, then close it. Never raises."""
        if self._alive:
            self._alive = False
            try:
                self._command("QUIT", self._timeouts.quit)
            except _Lost:
                pass
        _close(self._smtp)

    # -- the conversation ---------------------------------------------------------

    def _transaction(
        self, email: PreparedEmail, recipients: list[str]
    ) -> tuple[list[Outcome], list[str]]:
        """Run MAIL, RCPTs and DATA once; return outcomes and the recipients left."""
        features = self._smtp.esmtp_features
        mail, refusal = self._mail_command(email, features)
        if refusal is not None:
            code, detail = refusal
            return self._all(recipients, DeliveryResult.FAILED, code, detail), []

        # RFC 2920: with PIPELINING, MAIL, the RCPTs and DATA go in one write and
        # the replies are read back in order; each still decides its recipient.
        pipelined = "pipelining" in features
        if pipelined:
            batch = [mail, *(f"RCPT TO:<{a}>" for a in recipients), "DATA"]
            try:
                self._write(batch, self._timeouts.mail)
            except _Lost as exc:
                return self._lost_at_mail(recipients, exc), []
        try:
            reply = self._step(mail, pipelined, self._timeouts.mail)
        except _Lost as exc:
            return self._lost_at_mail(recipients, exc), []
        if not 200 <= reply.code < 300:
            if pipelined:
                self._drain(len(recipients) + 1)
            if reply.code == 552 and "size" in features:
                return self._all(
                    recipients, DeliveryResult.FAILED, "5.3.4", "MAIL refused", reply
                ), []
            return self._refused(recipients, "MAIL", reply), []

        accepted: list[str] = []
        outcomes: list[Outcome] = []
        leftover: list[str] = []
        for index, address in enumerate(recipients):
            try:
                reply = self._step(
                    f"RCPT TO:<{address}>", pipelined, self._timeouts.rcpt
                )
            except _Lost as exc:
                lost = [*recipients[index:], *accepted]
                detail = f"lost at RCPT: {exc}"
                return outcomes + self._all(
                    lost, DeliveryResult.DEFERRED, "4.4.2", detail
                ), []
            if 200 <= reply.code < 300:
                accepted.append(address)
            elif reply.code in (452, 552) and accepted:
                # RFC 5321 §4.5.3.1.10: the rest go in another transaction.
                leftover.append(address)
                if not pipelined:
                    leftover += recipients[index + 1 :]
                    break
            elif reply.code == 421:
                outcomes += self._refused(
                    [*recipients[index:], *accepted], "RCPT", reply
                )
                return outcomes, []
            else:
                outcomes.append(self._from_reply(address, "RCPT", reply))

        if not accepted:
            # RFC 5321 §3.3: no recipient was accepted, so no message data.
            if pipelined:
                self._refuse_pipelined_data()
            else:
                self.reset()
            return outcomes + self._all(
                leftover, DeliveryResult.DEFERRED, "4.5.3", "too many recipients"
            ), []
        outcomes += self._data(email, accepted, pipelined)
        return outcomes, leftover

    def _data(
        self, email: PreparedEmail, accepted: list[str], pipelined: bool
    ) -> list[Outcome]:
        try:
            reply = self._step("DATA", pipelined, self._timeouts.data_init)
        except _Lost as exc:
            return self._all(
                accepted, DeliveryResult.DEFERRED, "4.4.2", f"lost at DATA: {exc}"
            )
        if reply.code != 354:
            if reply.code // 100 in (4, 5):
                return self._refused(accepted, "DATA", reply)
            self._drop()
            detail = f"{_where(self.remote)} answered DATA with {reply}, not 354"
            return self._all(accepted, DeliveryResult.DEFERRED, "4.5.0", detail, reply)
        # RFC 5321 §4.5.2: a line that starts with "." gets one more.
        payload = _LEADING_DOT.sub(b"..", email.data) + b".\r\n"
        try:
            self._sock().settimeout(self._timeouts.data_block)
            self._smtp.send(payload)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            detail = f"connection lost while sending the message: {_why(exc)}"
            return self._all(accepted, DeliveryResult.DEFERRED, "4.4.2", detail)
        try:
            reply = self._reply(self._timeouts.data_done)
        except _Lost as exc:
            log.warning(
                "no reply from %s after the end of message %s; it may be delivered "
                "more than once",
                _where(self.remote),
                email.message_id,
            )
            detail = f"no reply after the end of the message: {exc}"
            return [
                self._outcome(
                    a, DeliveryResult.DEFERRED, "4.4.2", detail, possibly_delivered=True
                )
                for a in accepted
            ]
        return [self._from_reply(a, "end of data", reply) for a in accepted]

    def _mail_command(
        self, email: PreparedEmail, features: dict[str, str]
    ) -> tuple[str, tuple[str, str] | None]:
        """The MAIL command with its parameters, or why the server cannot take it.

        Returns:
            ``(command, None)``, or ``("", (status code, detail))`` when the
            message needs something the server does not offer.
        """
        if refusal := requiretls_refusal(email, self.remote, features):
            return "", (REQUIRETLS_FAILED, refusal)
        options = ["REQUIRETLS"] if email.require_tls else []
        if "size" in features:
            limit = _int(features["size"])
            if limit and len(email.data) > limit:
                return "", (
                    "5.3.4",
                    f"{len(email.data)} octets exceed the limit of {limit}",
                )
            options.append(f"SIZE={len(email.data)}")
        if email.eight_bit:
            if "8bitmime" not in features:
                return "", (
                    "5.6.3",
                    "the message is 8-bit and the server lacks 8BITMIME",
                )
            options.append("BODY=8BITMIME")
        self._smtp.command_encoding = "ascii"
        if email.smtputf8:
            if "smtputf8" not in features:
                return "", (
                    "5.6.7",
                    "the message needs SMTPUTF8 and the server lacks it",
                )
            options.append("SMTPUTF8")
            self._smtp.command_encoding = "utf-8"
        return " ".join([f"MAIL FROM:<{email.mail_from}>", *options]), None

    def _lost_at_mail(self, recipients: Sequence[str], exc: _Lost) -> list[Outcome]:
        if self._maybe_stale:
            # A kept connection the server has since closed: nothing of this
            # message was accepted, so the caller may resend on a new one.
            raise StaleSessionError(f"{_where(self.remote)}: {exc}")
        detail = f"lost at MAIL: {exc}"
        return self._all(recipients, DeliveryResult.DEFERRED, "4.4.2", detail)

    def _refuse_pipelined_data(self) -> None:
        """Read the reply to a pipelined DATA when no recipient was accepted.

        RFC 2920 §3.1: the server should refuse it; one that answers 354 anyway
        gets an empty message, which a transaction without recipients discards.
        """
        try:
            reply = self._reply(self._timeouts.data_init)
            if reply.code == 354:
                self._smtp.send(b".\r\n")
                self._reply(self._timeouts.data_done)
        except (_Lost, OSError, smtplib.SMTPException):
            self._drop()
            return
        self.reset()

    def _drain(self, count: int) -> None:
        """Read ``count`` pipelined replies nobody needs (after a refused MAIL)."""
        try:
            for _ in range(count - 1):
                self._reply(self._timeouts.rcpt)
            if self._reply(self._timeouts.data_init).code == 354:
                self._smtp.send(b".\r\n")
                self._reply(self._timeouts.data_done)
        except (_Lost, OSError, smtplib.SMTPException):
            self._drop()

    def _hello(self) -> None:
        reply = self._command(
            f"EHLO {self._smtp.local_hostname}", self._timeouts.greeting
        )
        if reply.code == 250:
            self._smtp.ehlo_resp = reply.text.encode()
            self._smtp.does_esmtp = True
            self._smtp.esmtp_features = _parse_features(reply.text)
            return
        reply = self._command(
            f"HELO {self._smtp.local_hostname}", self._timeouts.greeting
        )
        if reply.code != 250:
            raise SessionFailure(
                f"{_where(self.remote)} refused HELO: {reply}", "4.4.2", reply
            )
        self._smtp.helo_resp = reply.text.encode()
        self._smtp.does_esmtp = False
        self._smtp.esmtp_features = {}

    def _starttls(self, context: ssl.SSLContext | None, *, required: bool) -> None:
        assert context is not None
        if "starttls" not in self._smtp.esmtp_features:
            if required:
                raise SessionFailure(
                    f"{_where(self.remote)} does not offer STARTTLS", "4.7.4"
                )
            return
        reply = self._command("STARTTLS", self._timeouts.greeting)
        if reply.code != 220:
            if not required and self._alive:
                # RFC 3207 §4: after a refusal the session goes on as it was.
                log.info("%s refused STARTTLS (%s)", _where(self.remote), reply)
                return
            raise SessionFailure(
                f"{_where(self.remote)} refused STARTTLS: {reply}", "4.7.4", reply
            )
        try:
            self._smtp.sock = context.wrap_socket(
                self._sock(), server_hostname=self._server_name
            )
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            raise SessionFailure(
                f"TLS with {_where(self.remote)} failed: {_why(exc)}",
                "4.7.5",
                tls_failed=True,
            ) from None
        # RFC 3207 §4.2: forget everything learnt before TLS, including any
        # plaintext the server (or an attacker) sent after its 220.
        self._smtp.file = None
        self._smtp.esmtp_features = {}
        self._hello()

    def _login(self, username: str, password: str) -> None:
        if not isinstance(self._smtp.sock, ssl.SSLSocket):
            raise SessionFailure("refusing to send credentials without TLS", "4.7.0")
        if "auth" not in self._smtp.esmtp_features:
            raise SessionFailure(f"{_where(self.remote)} does not offer AUTH", "4.7.0")
        try:
            self._sock().settimeout(self._timeouts.greeting)
            self._smtp.login(username, password)
        except smtplib.SMTPAuthenticationError as exc:
            reply = SmtpReply.parse(exc.smtp_code, exc.smtp_error)
            # Bad credentials are the sender's configuration, not the recipient's
            # fault: defer, as Postfix does by default (smtp_sasl_auth_soft_bounce).
            raise SessionFailure(
                f"{_where(self.remote)} refused the credentials: {reply}",
                "4.7.8",
                reply,
            ) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise _Lost(str(exc)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SessionFailure(
                f"AUTH with {_where(self.remote)} failed: {_why(exc)}", "4.7.0"
            ) from None

    # -- plumbing -----------------------------------------------------------------

    def _command(self, line: str, timeout: float) -> SmtpReply:
        if not self._alive:
            raise _Lost("connection already closed")
        try:
            self._sock().settimeout(timeout)
            self._smtp.putcmd(line)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise _Lost(_why(exc)) from None
        return self._reply(timeout)

    def _write(self, lines: list[str], timeout: float) -> None:
        """Send several command lines in one write (a PIPELINING batch)."""
        if not self._alive:
            raise _Lost("connection already closed")
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError(f"line break in an SMTP command: {line!r}")
        try:
            self._sock().settimeout(timeout)
            self._smtp.send("".join(f"{line}\r\n" for line in lines))
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise _Lost(_why(exc)) from None

    def _step(self, line: str, pipelined: bool, timeout: float) -> SmtpReply:
        """The reply to ``line``: read it if already sent in a batch, else send it."""
        return self._reply(timeout) if pipelined else self._command(line, timeout)

    def _reply(self, timeout: float) -> SmtpReply:
        try:
            self._sock().settimeout(timeout)
            code, text = self._smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise _Lost(_why(exc)) from None
        reply = SmtpReply.parse(code, text)
        if code == 421:
            # RFC 5321 §3.8: the server is closing the channel.
            self._drop()
        return reply

    def _sock(self) -> socket.socket:
        sock = self._smtp.sock
        if sock is None:
            raise OSError("not connected")
        return sock

    def _drop(self) -> None:
        self._alive = False
        _close(self._smtp)

    def _refused(
        self, recipients: Sequence[str], step: str, reply: SmtpReply
    ) -> list[Outcome]:
        return [self._from_reply(a, step, reply) for a in recipients]

    def _from_reply(self, address: str, step: str, reply: SmtpReply) -> Outcome:
        result = classify_reply(reply)
        code = status_code_for(reply)
        if result is DeliveryResult.DELIVERED:
            detail = f"accepted by {_where(self.remote)}: {reply}"
        else:
            detail = f"{_where(self.remote)} answered {step} with {reply}"
        return self._outcome(address, result, code, detail, reply)

    def _all(
        self,
        recipients: Sequence[str],
        result: DeliveryResult,
        code: str,
        detail: str,
        reply: SmtpReply | None = None,
    ) -> list[Outcome]:
        return [self._outcome(a, result, code, detail, reply) for a in recipients]

    def _outcome(
        self,
        address: str,
        result: DeliveryResult,
        code: str,
        detail: str,
        reply: SmtpReply | None = None,
        *,
        possibly_delivered: bool = False,
    ) -> Outcome:
        return Outcome(
            address, result, code, detail, reply, possibly_delivered, self.remote
        )


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


def _verifies(context: ssl.SSLContext) -> bool:
    return context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def _peer(smtp: smtplib.SMTP, default: str) -> str:
    try:
        return str(smtp.sock.getpeername()[0]) if smtp.sock else default
    except OSError:
        return default


def _int(text: str) -> int:
    try:
        return int(text.split(maxsplit=1)[0]) if text.strip() else 0
    except ValueError:
        return 0


def _where(remote: Remote) -> str:
    if remote.host == remote.address:
        return f"{remote.host}:{remote.port}"
    return f"{remote.host}[{remote.address}]:{remote.port}"


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError | socket.timeout) or "timed out" in text:
        return "timed out"
    return text


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.close()
    except OSError:
        pass
