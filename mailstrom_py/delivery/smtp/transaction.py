"""One SMTP transaction: MAIL, one RCPT per recipient, DATA.

Each reply decides the recipients it concerns, and the phase the connection
was lost in decides what a loss means: before the final dot nothing was
delivered, after it the message may have been (see :mod:`.pipeline`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...codes import (
    BAD_CONNECTION,
    MESSAGE_TOO_BIG,
    OTHER_PROTOCOL_TRANSIENT,
    TOO_MANY_RECIPIENTS,
)
from ...message import PreparedEmail
from ...status import DeliveryResult, SmtpReply, SmtpStep
from ..base import Outcome
from .envelope import Unsendable, mail_command
from .failure import ConnectionLost, StaleSessionError
from .link import SmtpLink
from .outcomes import OutcomeBuilder
from .pipeline import HeldContent

__all__ = ["Transaction", "dot_stuffed"]

_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def dot_stuffed(data: bytes) -> bytes:
    """Return prepared message data with one more "." on each line starting with
    one (RFC 5321 §4.5.2), ready to be ended by ``.`` CRLF.

    *data* keeps the contract of :attr:`PreparedEmail.data
    <mailstrom_py.PreparedEmail>`: CRLF line ends, no CR or LF outside a CRLF.
    Preparation guarantees it: the full path refuses bytes with a bare CR or LF
    (:func:`mailstrom_py.message.serialise.verify`), the fast path takes only
    CRLF lines (:mod:`mailstrom_py.message.fastpath`), a DKIM signature put in
    front is folded in CRLF (dkimpy's line separator), and storage gives back
    the octets it was given. A dot after a bare LF is stuffed all the same:
    ``PreparedEmail`` is public, and a receiver that takes a bare LF for a line
    end would otherwise read such a line as the end of the data (the SMTP
    smuggling of 2023), so the check looks for LF ".", not CRLF ".".
    """
    if data.startswith(b".") or b"\n." in data:
        return _LEADING_DOT.sub(b"..", data)
    return data


#: The RCPT replies of the recipients accepted so far, by recipient.
Accepted = dict[str, SmtpReply]


class Transaction:
    """One transaction for ``email`` on ``link``, the batch's message ``index``,
    its outcomes built by ``outcomes``.

    With PIPELINING (RFC 2920) MAIL, the RCPTs and DATA go in one write, led by
    the content ``pipeline`` holds of the message before, and the replies are
    read back in order; each still decides its recipient. The message's own
    content is then held in ``pipeline`` for the next write.

    ``maybe_stale`` says the link was kept from an earlier message and may have
    been closed by the server since: a connection lost before MAIL is answered
    then raises :class:`StaleSessionError` instead of deferring.
    """

    def __init__(
        self,
        link: SmtpLink,
        pipeline: HeldContent,
        outcomes: OutcomeBuilder,
        email: PreparedEmail,
        index: int,
        *,
        maybe_stale: bool,
    ) -> None:
        self._link = link
        self._pipeline = pipeline
        self._email = email
        self._index = index
        self._maybe_stale = maybe_stale
        self._outcomes = outcomes
        self._pipelined = "pipelining" in link.features

    def run(self, recipients: list[str], outcomes: list[Outcome]) -> list[str]:
        """Run MAIL, RCPTs and DATA once, adding to ``outcomes``; return the
        recipients left for another transaction.

        Raises:
            StaleSessionError: see the class docstring.
        """
        command = mail_command(self._email, self._link.features, self._link.remote)
        if isinstance(command, Unsendable):
            outcomes += self._outcomes.alike(
                recipients, DeliveryResult.FAILED, command.status_code, command.detail
            )
            return []
        self._link.use_encoding(command.encoding)
        if (refused := self._mail(command.line, recipients)) is not None:
            outcomes += refused
            return []
        if (phase := self._rcpts(recipients, outcomes)) is None:
            return []
        accepted, leftover = phase
        if not accepted:
            # RFC 5321 §3.3: no recipient was accepted, so no message data.
            self._no_data()
            outcomes += self._outcomes.alike(
                leftover,
                DeliveryResult.DEFERRED,
                TOO_MANY_RECIPIENTS,
                "too many recipients",
            )
            return []
        self._data(accepted, outcomes)
        return leftover

    def _mail(self, line: str, recipients: list[str]) -> list[Outcome] | None:
        """Send MAIL (with the RCPTs and DATA, pipelined); the outcomes of every
        recipient if it was not accepted, else None."""
        if self._pipelined:
            commands = [line, *(f"RCPT TO:<{a}>" for a in recipients), "DATA"]
            try:
                trouble = self._pipeline.write(commands)
            except ConnectionLost as exc:
                return self._lost_at_mail(recipients, exc)
            if trouble is not None:
                return self._outcomes.alike(
                    recipients, DeliveryResult.DEFERRED, BAD_CONNECTION, trouble
                )
        timeout = self._link.timeouts.mail
        try:
            reply = self._link.exchange(line, self._pipelined, timeout, SmtpStep.MAIL)
        except ConnectionLost as exc:
            return self._lost_at_mail(recipients, exc)
        if 200 <= reply.code < 300:
            return None
        if self._pipelined:
            self._drain(len(recipients) + 1)
        if reply.code == 552 and "size" in self._link.features:
            return self._outcomes.alike(
                recipients,
                DeliveryResult.FAILED,
                MESSAGE_TOO_BIG,
                "MAIL refused",
                reply,
            )
        return self._outcomes.refused(recipients, reply)

    def _rcpts(
        self, recipients: list[str], outcomes: list[Outcome]
    ) -> tuple[Accepted, list[str]] | None:
        """Read (or send, then read) one RCPT per recipient, adding the refused
        to ``outcomes``; return the accepted and those left for another
        transaction, or None if the transaction is over (every recipient then
        has its outcome)."""
        accepted: Accepted = {}
        leftover: list[str] = []
        timeout = self._link.timeouts.rcpt
        for index, address in enumerate(recipients):
            line = f"RCPT TO:<{address}>"
            try:
                reply = self._link.exchange(
                    line, self._pipelined, timeout, SmtpStep.RCPT
                )
            except ConnectionLost as exc:
                outcomes += self._outcomes.alike(
                    [*recipients[index:], *accepted],
                    DeliveryResult.DEFERRED,
                    BAD_CONNECTION,
                    f"lost at RCPT: {exc}",
                    rcpt=accepted,
                )
                return None
            if 200 <= reply.code < 300:
                accepted[address] = reply
            elif reply.code in (452, 552) and accepted:
                # RFC 5321 §4.5.3.1.10: the rest go in another transaction.
                leftover.append(address)
                if not self._pipelined:
                    leftover += recipients[index + 1 :]
                    break
            elif reply.code == 421:
                outcomes += self._outcomes.refused(
                    [*recipients[index:], *accepted],
                    reply,
                    {**accepted, address: reply},
                )
                return None
            else:
                outcomes.append(self._outcomes.from_reply(address, reply, reply))
        return accepted, leftover

    def _data(self, accepted: Accepted, outcomes: list[Outcome]) -> None:
        """Read (or send, then read) DATA's reply; after a 354, hold the content
        for the next write, or send it now without PIPELINING."""
        timeout = self._link.timeouts.data_init
        try:
            reply = self._link.exchange("DATA", self._pipelined, timeout, SmtpStep.DATA)
        except ConnectionLost as exc:
            outcomes += self._outcomes.alike(
                accepted,
                DeliveryResult.DEFERRED,
                BAD_CONNECTION,
                f"lost at DATA: {exc}",
                rcpt=accepted,
            )
            return
        if reply.code != 354:
            if reply.code // 100 in (4, 5):
                outcomes += self._outcomes.refused(accepted, reply, accepted)
                return
            self._link.drop()
            outcomes += self._outcomes.alike(
                accepted,
                DeliveryResult.DEFERRED,
                OTHER_PROTOCOL_TRANSIENT,
                f"{self._link.label} answered DATA with {reply}, not 354",
                reply,
                rcpt=accepted,
            )
            return
        message_id = self._email.message_id
        payload = dot_stuffed(self._email.data) + b".\r\n"
        self._pipeline.hold(self._index, message_id, payload, accepted, outcomes)
        if not self._pipelined:
            self._pipeline.flush()

    def _lost_at_mail(
        self, recipients: Sequence[str], exc: ConnectionLost
    ) -> list[Outcome]:
        if self._maybe_stale:
            # A kept connection the server has since closed: nothing of this
            # message was accepted, so the caller may resend on a new one.
            raise StaleSessionError(f"{self._link.label}: {exc}")
        return self._outcomes.alike(
            recipients, DeliveryResult.DEFERRED, BAD_CONNECTION, f"lost at MAIL: {exc}"
        )

    def _no_data(self) -> None:
        """End a transaction without message data: RSET, or for a pipelined
        DATA, read its reply first.

        RFC 2920 §3.1: the server should refuse that DATA; one that answers 354
        anyway gets an empty message, which a transaction without recipients
        discards.
        """
        if self._pipelined:
            try:
                reply = self._link.reply(self._link.timeouts.data_init)
                if reply.code == 354:
                    self._link.end_empty_data()
            except ConnectionLost:
                self._link.drop()
                return
        self._link.reset()

    def _drain(self, count: int) -> None:
        """Read ``count`` pipelined replies nobody needs (after a refused MAIL)."""
        if not self._link.alive:
            return
        timeouts = self._link.timeouts
        try:
            for _ in range(count - 1):
                self._link.reply(timeouts.rcpt)
            if self._link.reply(timeouts.data_init).code == 354:
                self._link.end_empty_data()
        except ConnectionLost:
            self._link.drop()
