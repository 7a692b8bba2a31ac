"""SMTP transactions with a result for every recipient.

smtplib's ``sendmail`` is all-or-nothing and cannot tell a connection lost before
the final dot (safe to retry) from one lost after it (possibly delivered). A
session drives MAIL, the RCPTs and DATA itself, pipelined where the server
offers it (RFC 2920), with one reply per recipient and the protocol phase
tracked so each failure is classified as reliability rules demand. A batch of
messages is pipelined across messages too: each message's content shares a
write with the next message's envelope.
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ...codes import (
    BAD_CONNECTION,
    MESSAGE_TOO_BIG,
    OTHER_PROTOCOL_TRANSIENT,
    TOO_MANY_RECIPIENTS,
)
from ...config import Timeouts
from ...message import PreparedEmail
from ...retry import classify_reply, status_code_for
from ...status import DeliveryResult, Remote, SmtpReply, SmtpStep
from ..base import Item, OnOutcome, Outcome
from ..tls_policy import TlsPolicy
from .client import SmtpClient
from .envelope import Unsendable, mail_command
from .failure import (
    ConnectionLost,
    SessionFailure,
    StaleSessionError,
)
from .link import SmtpLink

__all__ = ["SessionFailure", "SmtpSession", "StaleSessionError"]

log = logging.getLogger(__name__)

_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


@dataclass(frozen=True)
class _Held:
    """A message whose DATA was answered 354 and whose content is yet to go.

    With PIPELINING the content and final dot wait for the next write, and the
    outcomes of ``accepted`` (each with its RCPT reply) join ``outcomes`` (the
    message's list) once the dot is answered. ``index`` is the message's place
    in its ``send_many`` batch.
    """

    index: int
    message_id: str
    payload: bytes
    accepted: dict[str, SmtpReply]
    outcomes: list[Outcome]


class SmtpSession(SmtpLink):
    """An :class:`SmtpLink` that sends messages: one transaction per message and
    destination, one outcome per recipient.

    Open one with :meth:`open`; run transactions with :meth:`send` or
    :meth:`send_many`; end it with :meth:`close`. Not thread-safe: one session
    belongs to one delivery thread.
    """

    def __init__(
        self, smtp: SmtpClient, remote: Remote, timeouts: Timeouts, tls: TlsPolicy
    ) -> None:
        super().__init__(smtp, remote, timeouts, tls)
        #: How many messages this session has started.
        self.messages = 0
        self._maybe_stale = False
        self._held: _Held | None = None
        # The batch item being sent, and who hears of final outcomes.
        self._index = -1
        self._on_outcome: OnOutcome | None = None

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
        [outcomes] = self.send_many([(email, recipients)])
        return outcomes

    def send_many(
        self, batch: Sequence[Item], on_outcome: OnOutcome | None = None
    ) -> list[list[Outcome]]:
        """Send the messages of ``batch`` in order; one outcome list per message sent.

        With PIPELINING a message's content and final dot go in the same write
        as the next message's MAIL, RCPTs and DATA, so a message costs about
        one round trip instead of two. The outcomes are those of calling
        :meth:`send` for each message in turn, but for how the connection
        ending early is reported:

        - The result is shorter than ``batch``: the messages left out were not
          started (none of them can have been accepted) and may be sent on
          another session.
        - The message whose envelope went out with the previous message's
          final dot is deferred with 4.4.2 when the connection is lost, or
          closed with 421, before that dot is answered (the previous message
          is then possibly delivered, or has the 421).
        - A message whose final dot ended a write (the last one, or any without
          PIPELINING) is not possibly delivered when the server resets the
          connection before answering: the reset discarded its end unread.
          When the next envelope followed the dot, the reset may have
          discarded that envelope alone, and the message is possibly delivered.

        ``on_outcome(index, outcomes)`` is told of each message sent as soon as
        its outcomes are final: once its final dot is answered (or its
        transaction ended without one), which with PIPELINING is while the
        next message's envelope is being answered.

        Raises:
            StaleSessionError: as for :meth:`send`, for the first message only;
                for a later one the result ends before it.
        """
        results: list[list[Outcome]] = []
        self._on_outcome = on_outcome
        try:
            for index, (email, recipients) in enumerate(batch):
                if results and not self.alive:
                    break
                self._index = index
                try:
                    outcomes = self._message(email, recipients)
                except StaleSessionError:
                    if not results:
                        raise
                    break
                results.append(outcomes)
                if self._held is None or self._held.index != index:
                    self._settled(index, outcomes)
        finally:
            self._index = -1
            self._flush()
            self._on_outcome = None
        return results

    def _settled(self, index: int, outcomes: list[Outcome]) -> None:
        """Report the final outcomes of the batch's message ``index``."""
        if self._on_outcome is not None:
            self._on_outcome(index, outcomes)

    def _held_settled(self, held: _Held) -> None:
        """Report ``held`` if its dot was the last of its message: a message
        still being sent may need another transaction after it."""
        if held.index != self._index:
            self._settled(held.index, held.outcomes)

    # -- the conversation ---------------------------------------------------------

    def _message(
        self, email: PreparedEmail, recipients: Sequence[str]
    ) -> list[Outcome]:
        """Run as many transactions as the recipients need; the list returned may
        still grow by the outcomes of a held final dot."""
        self.messages += 1
        self._maybe_stale = self.messages > 1
        outcomes: list[Outcome] = []
        pending = list(recipients)
        while pending and self.alive:
            start = len(outcomes)
            pending = self._transaction(email, pending, outcomes)
            self._maybe_stale = False
            if not pending:
                break
            # Whether the rest get another transaction depends on the dot's reply.
            self._flush()
            if not any(o.result is DeliveryResult.DELIVERED for o in outcomes[start:]):
                break
        outcomes.extend(
            self._outcome(
                a, DeliveryResult.DEFERRED, TOO_MANY_RECIPIENTS, "too many recipients"
            )
            for a in pending
        )
        return outcomes

    def _transaction(
        self, email: PreparedEmail, recipients: list[str], outcomes: list[Outcome]
    ) -> list[str]:
        """Run MAIL, RCPTs and DATA once, adding to ``outcomes``; return the
        recipients left for another transaction."""
        features = self.features
        command = mail_command(email, features, self.remote)
        if isinstance(command, Unsendable):
            outcomes += self._all(
                recipients, DeliveryResult.FAILED, command.status_code, command.detail
            )
            return []
        self.use_encoding(command.encoding)
        mail = command.line

        # RFC 2920: with PIPELINING, MAIL, the RCPTs and DATA go in one write and
        # the replies are read back in order; each still decides its recipient.
        pipelined = "pipelining" in features
        if pipelined:
            commands = [mail, *(f"RCPT TO:<{a}>" for a in recipients), "DATA"]
            if (ended := self._write_group(commands, recipients)) is not None:
                outcomes += ended
                return []
        try:
            reply = self.exchange(mail, pipelined, self.timeouts.mail, SmtpStep.MAIL)
        except ConnectionLost as exc:
            outcomes += self._lost_at_mail(recipients, exc)
            return []
        if not 200 <= reply.code < 300:
            if pipelined:
                self._drain(len(recipients) + 1)
            if reply.code == 552 and "size" in features:
                outcomes += self._all(
                    recipients,
                    DeliveryResult.FAILED,
                    MESSAGE_TOO_BIG,
                    "MAIL refused",
                    reply,
                )
            else:
                outcomes += self._refused(recipients, reply)
            return []

        # The recipients accepted so far, each with its RCPT reply.
        accepted: dict[str, SmtpReply] = {}
        leftover: list[str] = []
        for index, address in enumerate(recipients):
            try:
                reply = self.exchange(
                    f"RCPT TO:<{address}>",
                    pipelined,
                    self.timeouts.rcpt,
                    SmtpStep.RCPT,
                )
            except ConnectionLost as exc:
                lost = [*recipients[index:], *accepted]
                detail = f"lost at RCPT: {exc}"
                outcomes += self._all(
                    lost, DeliveryResult.DEFERRED, BAD_CONNECTION, detail, rcpt=accepted
                )
                return []
            if 200 <= reply.code < 300:
                accepted[address] = reply
            elif reply.code in (452, 552) and accepted:
                # RFC 5321 §4.5.3.1.10: the rest go in another transaction.
                leftover.append(address)
                if not pipelined:
                    leftover += recipients[index + 1 :]
                    break
            elif reply.code == 421:
                outcomes += self._refused(
                    [*recipients[index:], *accepted],
                    reply,
                    {**accepted, address: reply},
                )
                return []
            else:
                outcomes.append(self._from_reply(address, reply, reply))

        if not accepted:
            # RFC 5321 §3.3: no recipient was accepted, so no message data.
            if pipelined:
                self._refuse_pipelined_data()
            else:
                self.reset()
            outcomes += self._all(
                leftover,
                DeliveryResult.DEFERRED,
                TOO_MANY_RECIPIENTS,
                "too many recipients",
            )
            return []
        self._data(email, accepted, pipelined, outcomes)
        return leftover

    def _write_group(
        self, commands: list[str], recipients: list[str]
    ) -> list[Outcome] | None:
        """Write a pipelined group, led by the held message's content if any,
        and settle that message; return the outcomes of ``recipients`` if the
        connection ended before their MAIL could be answered, else None.

        Raises:
            StaleSessionError: see :meth:`_lost_at_mail`.
        """
        # RFC 2920 §3.1: "The actual transfer of message content is explicitly
        # allowed to be the first 'command' in a group", so the previous
        # message's content and dot lead the next envelope.
        held = self._held
        before = held.payload if held is not None else b""
        timeout = self.timeouts.data_block if held else self.timeouts.mail
        try:
            self.write(commands, timeout, before=before)
        except ConnectionLost as exc:
            self._held = None
            if held is not None:
                self._unsent(held, str(exc))
            return self._lost_at_mail(recipients, exc)
        self._held = None
        if held is None:
            return None
        reply = self._answer(held, last=False)
        if reply is None:
            detail = "connection lost before the previous message's end was answered"
        elif not self.alive:
            detail = f"{self.label} closed the connection before MAIL: {reply}"
        else:
            return None
        return self._all(recipients, DeliveryResult.DEFERRED, BAD_CONNECTION, detail)

    def _data(
        self,
        email: PreparedEmail,
        accepted: dict[str, SmtpReply],
        pipelined: bool,
        outcomes: list[Outcome],
    ) -> None:
        try:
            reply = self.exchange(
                "DATA", pipelined, self.timeouts.data_init, SmtpStep.DATA
            )
        except ConnectionLost as exc:
            detail = f"lost at DATA: {exc}"
            outcomes += self._all(
                accepted, DeliveryResult.DEFERRED, BAD_CONNECTION, detail, rcpt=accepted
            )
            return
        if reply.code != 354:
            if reply.code // 100 in (4, 5):
                outcomes += self._refused(accepted, reply, accepted)
                return
            self.drop()
            detail = f"{self.label} answered DATA with {reply}, not 354"
            outcomes += self._all(
                accepted,
                DeliveryResult.DEFERRED,
                OTHER_PROTOCOL_TRANSIENT,
                detail,
                reply,
                rcpt=accepted,
            )
            return
        # RFC 5321 §4.5.2: a line that starts with "." gets one more.
        data = email.data
        if data.startswith(b".") or b"\n." in data:
            data = _LEADING_DOT.sub(b"..", data)
        payload = data + b".\r\n"
        self._held = _Held(self._index, email.message_id, payload, accepted, outcomes)
        if not pipelined:
            self._flush()

    def _flush(self) -> None:
        """Send the held message's content on its own and read the dot's reply."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            self.write([], self.timeouts.data_block, before=held.payload)
        except ConnectionLost as exc:
            self._unsent(held, str(exc))
            return
        self._answer(held, last=True)

    def _answer(self, held: _Held, *, last: bool) -> SmtpReply | None:
        """Read the reply to ``held``'s final dot and settle its recipients;
        None if the connection was lost first.

        They may have been delivered then, unless the server reset the
        connection and the dot was the ``last`` thing written: a reset discards
        the bytes the server had not read, and the last of them was the dot.
        After a write that went on with the next envelope, the unread bytes
        may have been that envelope alone.
        """
        try:
            reply = self.reply(self.timeouts.data_done, SmtpStep.END_OF_DATA)
        except ConnectionLost as exc:
            if exc.reset and last:
                self._unsent(held, str(exc))
                return None
            log.warning(
                "no reply from %s after the end of message %s; it may be delivered "
                "more than once",
                self.label,
                held.message_id,
            )
            detail = f"no reply after the end of the message: {exc}"
            held.outcomes.extend(
                self._outcome(
                    a,
                    DeliveryResult.DEFERRED,
                    BAD_CONNECTION,
                    detail,
                    possibly_delivered=True,
                    rcpt_reply=rcpt,
                )
                for a, rcpt in held.accepted.items()
            )
            self._held_settled(held)
            return None
        held.outcomes.extend(
            self._from_reply(a, reply, rcpt) for a, rcpt in held.accepted.items()
        )
        self._held_settled(held)
        return reply

    def _unsent(self, held: _Held, reason: str) -> None:
        detail = (
            f"connection lost before the server read the end of the message: {reason}"
        )
        held.outcomes.extend(
            self._all(
                held.accepted,
                DeliveryResult.DEFERRED,
                BAD_CONNECTION,
                detail,
                rcpt=held.accepted,
            )
        )
        self._held_settled(held)

    def _lost_at_mail(
        self, recipients: Sequence[str], exc: ConnectionLost
    ) -> list[Outcome]:
        if self._maybe_stale:
            # A kept connection the server has since closed: nothing of this
            # message was accepted, so the caller may resend on a new one.
            raise StaleSessionError(f"{self.label}: {exc}")
        detail = f"lost at MAIL: {exc}"
        return self._all(recipients, DeliveryResult.DEFERRED, BAD_CONNECTION, detail)

    def _refuse_pipelined_data(self) -> None:
        """Read the reply to a pipelined DATA when no recipient was accepted.

        RFC 2920 §3.1: the server should refuse it; one that answers 354 anyway
        gets an empty message, which a transaction without recipients discards.
        """
        try:
            reply = self.reply(self.timeouts.data_init)
            if reply.code == 354:
                self.end_empty_data()
        except (ConnectionLost, OSError, smtplib.SMTPException):
            self.drop()
            return
        self.reset()

    def _drain(self, count: int) -> None:
        """Read ``count`` pipelined replies nobody needs (after a refused MAIL)."""
        if not self.alive:
            return
        try:
            for _ in range(count - 1):
                self.reply(self.timeouts.rcpt)
            if self.reply(self.timeouts.data_init).code == 354:
                self.end_empty_data()
        except (ConnectionLost, OSError, smtplib.SMTPException):
            self.drop()

    def _refused(
        self,
        recipients: Iterable[str],
        reply: SmtpReply,
        rcpt: Mapping[str, SmtpReply] | None = None,
    ) -> list[Outcome]:
        """Outcomes decided by ``reply``; ``rcpt`` holds the RCPT replies known."""
        rcpt = rcpt or {}
        return [self._from_reply(a, reply, rcpt.get(a)) for a in recipients]

    def _from_reply(
        self, address: str, reply: SmtpReply, rcpt_reply: SmtpReply | None
    ) -> Outcome:
        result = classify_reply(reply)
        code = status_code_for(reply)
        if result is DeliveryResult.DELIVERED:
            detail = f"accepted by {self.label}: {reply}"
        else:
            detail = f"{self.label} answered {reply.step} with {reply}"
        return self._outcome(
            address, result, code, detail, reply, rcpt_reply=rcpt_reply
        )

    def _all(
        self,
        recipients: Iterable[str],
        result: DeliveryResult,
        code: str,
        detail: str,
        reply: SmtpReply | None = None,
        *,
        rcpt: Mapping[str, SmtpReply] | None = None,
    ) -> list[Outcome]:
        """Outcomes alike but for the RCPT replies ``rcpt`` holds."""
        rcpt = rcpt or {}
        return [
            self._outcome(a, result, code, detail, reply, rcpt_reply=rcpt.get(a))
            for a in recipients
        ]

    def _outcome(
        self,
        address: str,
        result: DeliveryResult,
        code: str,
        detail: str,
        reply: SmtpReply | None = None,
        *,
        possibly_delivered: bool = False,
        rcpt_reply: SmtpReply | None = None,
    ) -> Outcome:
        return Outcome(
            address,
            result,
            code,
            detail,
            reply,
            possibly_delivered,
            self.remote,
            rcpt_reply,
        )
