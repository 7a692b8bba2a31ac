"""SMTP transactions with a result for every recipient.

smtplib's ``sendmail`` is all-or-nothing and cannot tell a connection lost before
the final dot (safe to retry) from one lost after it (possibly delivered). A
session drives MAIL, the RCPTs and DATA itself, pipelined where the server
offers it (RFC 2920), with one reply per recipient and the protocol phase
tracked so each failure is classified as reliability rules demand.
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Sequence

from ..config import Timeouts
from ..message import PreparedEmail
from ..requiretls import REQUIRETLS_FAILED, requiretls_refusal
from ..retry import classify_reply, status_code_for
from ..status import DeliveryResult, Remote, SmtpReply
from .base import Outcome
from .link import (
    ConnectionLost,
    SessionFailure,
    SmtpClient,
    SmtpLink,
    StaleSessionError,
    parse_int,
    where,
    why,
)

__all__ = ["SessionFailure", "SmtpSession", "StaleSessionError"]

log = logging.getLogger(__name__)

_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


class SmtpSession(SmtpLink):
    """An :class:`SmtpLink` that sends messages: one transaction per message and
    destination, one outcome per recipient.

    Open one with :meth:`open`; run transactions with :meth:`send`; end it with
    :meth:`close`. Not thread-safe: one session belongs to one delivery thread.
    """

    def __init__(self, smtp: SmtpClient, remote: Remote, timeouts: Timeouts) -> None:
        super().__init__(smtp, remote, timeouts)
        #: How many messages :meth:`send` has carried.
        self.messages = 0
        self._maybe_stale = False

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
            except ConnectionLost as exc:
                return self._lost_at_mail(recipients, exc), []
        try:
            reply = self._step(mail, pipelined, self._timeouts.mail)
        except ConnectionLost as exc:
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
            except ConnectionLost as exc:
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
        except ConnectionLost as exc:
            return self._all(
                accepted, DeliveryResult.DEFERRED, "4.4.2", f"lost at DATA: {exc}"
            )
        if reply.code != 354:
            if reply.code // 100 in (4, 5):
                return self._refused(accepted, "DATA", reply)
            self._drop()
            detail = f"{where(self.remote)} answered DATA with {reply}, not 354"
            return self._all(accepted, DeliveryResult.DEFERRED, "4.5.0", detail, reply)
        # RFC 5321 §4.5.2: a line that starts with "." gets one more.
        payload = _LEADING_DOT.sub(b"..", email.data) + b".\r\n"
        try:
            self._sock().settimeout(self._timeouts.data_block)
            self._smtp.send(payload)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            detail = f"connection lost while sending the message: {why(exc)}"
            return self._all(accepted, DeliveryResult.DEFERRED, "4.4.2", detail)
        try:
            reply = self._reply(self._timeouts.data_done)
        except ConnectionLost as exc:
            log.warning(
                "no reply from %s after the end of message %s; it may be delivered "
                "more than once",
                where(self.remote),
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
            limit = parse_int(features["size"])
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

    def _lost_at_mail(
        self, recipients: Sequence[str], exc: ConnectionLost
    ) -> list[Outcome]:
        if self._maybe_stale:
            # A kept connection the server has since closed: nothing of this
            # message was accepted, so the caller may resend on a new one.
            raise StaleSessionError(f"{where(self.remote)}: {exc}")
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
        except (ConnectionLost, OSError, smtplib.SMTPException):
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
        except (ConnectionLost, OSError, smtplib.SMTPException):
            self._drop()

    def _refused(
        self, recipients: Sequence[str], step: str, reply: SmtpReply
    ) -> list[Outcome]:
        return [self._from_reply(a, step, reply) for a in recipients]

    def _from_reply(self, address: str, step: str, reply: SmtpReply) -> Outcome:
        result = classify_reply(reply)
        code = status_code_for(reply)
        if result is DeliveryResult.DELIVERED:
            detail = f"accepted by {where(self.remote)}: {reply}"
        else:
            detail = f"{where(self.remote)} answered {step} with {reply}"
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
