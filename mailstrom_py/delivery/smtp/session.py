"""SMTP sessions that send messages, with a result for every recipient.

smtplib's ``sendmail`` is all-or-nothing and cannot tell a connection lost before
the final dot (safe to retry) from one lost after it (possibly delivered). A
session drives MAIL, the RCPTs and DATA itself (:mod:`.transaction`), pipelined
where the server offers it (RFC 2920), with one reply per recipient and the
protocol phase tracked so each failure is classified as reliability rules
demand. A batch of messages is pipelined across messages too: each message's
content shares a write with the next message's envelope (:mod:`.pipeline`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...codes import TOO_MANY_RECIPIENTS
from ...config import Timeouts
from ...message import PreparedEmail
from ...status import DeliveryResult, Remote
from ..base import Item, OnOutcome, Outcome
from ..tls_policy import TlsPolicy
from .failure import SessionFailure, StaleSessionError
from .link import SmtpLink
from .outcomes import OutcomeBuilder
from .pipeline import HeldContent
from .transaction import Transaction

__all__ = ["SessionFailure", "SmtpSession", "StaleSessionError"]


class SmtpSession:
    """Sends messages over an :class:`SmtpLink`: one transaction per message and
    destination, one outcome per recipient.

    Open one with :meth:`open`; run transactions with :meth:`send` or
    :meth:`send_many`; end it with :meth:`close`. Not thread-safe: one session
    belongs to one delivery thread.
    """

    def __init__(self, link: SmtpLink) -> None:
        self._link = link
        #: How many messages this session has started.
        self.messages = 0
        self._outcomes = OutcomeBuilder(link.remote, link.label)
        self._pipeline = HeldContent(link, self._outcomes, self._held_settled)
        # The batch item being sent, and who hears of final outcomes.
        self._index = -1
        self._on_outcome: OnOutcome | None = None

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
    ) -> SmtpSession:
        """Open a session on a new :class:`SmtpLink`; the arguments are
        :meth:`SmtpLink.open`'s.

        Raises:
            SessionFailure: the session could not be set up; the connection is
                closed.
        """
        link = SmtpLink.open(
            host=host,
            address=address,
            port=port,
            helo_name=helo_name,
            timeouts=timeouts,
            tls=tls,
            credentials=credentials,
            plaintext_auth=plaintext_auth,
        )
        return cls(link)

    @property
    def remote(self) -> Remote:
        """The server, with its TLS version and verification."""
        return self._link.remote

    @property
    def tls(self) -> TlsPolicy:
        """The TLS policy the session was opened under."""
        return self._link.tls

    @property
    def alive(self) -> bool:
        """False once the connection is known to be unusable."""
        return self._link.alive

    def close(self, *, quit_wait: float | None = None) -> None:
        """Say QUIT if the connection is up, then close it; see
        :meth:`SmtpLink.close`. Never raises."""
        self._link.close(quit_wait=quit_wait)

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
                if not self._pipeline.holds(index):
                    self._settled(index, outcomes)
        finally:
            self._index = -1
            self._pipeline.flush()
            self._on_outcome = None
        return results

    def _settled(self, index: int, outcomes: list[Outcome]) -> None:
        """Report the final outcomes of the batch's message ``index``."""
        if self._on_outcome is not None:
            self._on_outcome(index, outcomes)

    def _held_settled(self, index: int, outcomes: list[Outcome]) -> None:
        """Report a held message once its dot is answered, if that dot was the
        last of its message: a message still being sent may need another
        transaction after it."""
        if index != self._index:
            self._settled(index, outcomes)

    def _message(
        self, email: PreparedEmail, recipients: Sequence[str]
    ) -> list[Outcome]:
        """Run as many transactions as the recipients need; the list returned may
        still grow by the outcomes of a held final dot."""
        self.messages += 1
        maybe_stale = self.messages > 1
        outcomes: list[Outcome] = []
        pending = list(recipients)
        while pending and self.alive:
            start = len(outcomes)
            transaction = Transaction(
                self._link,
                self._pipeline,
                self._outcomes,
                email,
                self._index,
                maybe_stale=maybe_stale,
            )
            pending = transaction.run(pending, outcomes)
            maybe_stale = False
            if not pending:
                break
            # Whether the rest get another transaction depends on the dot's reply.
            self._pipeline.flush()
            if not any(o.result is DeliveryResult.DELIVERED for o in outcomes[start:]):
                break
        if pending:
            outcomes += self._outcomes.alike(
                pending,
                DeliveryResult.DEFERRED,
                TOO_MANY_RECIPIENTS,
                "too many recipients",
            )
        return outcomes
