"""A message's content held back to open the next pipelined write.

RFC 2920 §3.1: "The actual transfer of message content is explicitly allowed
to be the first 'command' in a group". With PIPELINING, once a message's DATA
is answered 354, :class:`HeldContent` keeps its content and final dot until
the next write, the next message's MAIL, RCPTs and DATA, so a message costs
about one round trip instead of two. Reading the reply to the dot settles the
message's recipients.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ...codes import BAD_CONNECTION
from ...status import DeliveryResult, SmtpReply, SmtpStep
from ..base import Outcome
from .failure import ConnectionLost
from .link import SmtpLink
from .outcomes import OutcomeBuilder

__all__ = ["HeldContent"]

log = logging.getLogger(__name__)


@dataclass
class _Held:
    """A message whose DATA was answered 354 and whose content is yet to go.

    ``index`` is the message's place in its batch, ``payload`` its dot-stuffed
    content and final dot. Once the dot is answered, the outcomes of
    ``accepted`` (each with its RCPT reply) join ``outcomes``, the list the
    session already returned for the message.
    """

    index: int
    message_id: str
    payload: bytes
    accepted: dict[str, SmtpReply]
    outcomes: list[Outcome]


class HeldContent:
    """The content of at most one message, held for the next write on ``link``.

    ``settled(index, outcomes)`` is told each time a held message's recipients
    are settled, with the message's batch index and its whole outcome list,
    built by ``outcomes``.
    """

    def __init__(
        self,
        link: SmtpLink,
        outcomes: OutcomeBuilder,
        settled: Callable[[int, list[Outcome]], None],
    ) -> None:
        self._link = link
        self._outcomes = outcomes
        self._settled = settled
        self._held: _Held | None = None

    def holds(self, index: int) -> bool:
        """Whether the content of the batch's message ``index`` is held."""
        return self._held is not None and self._held.index == index

    def hold(
        self,
        index: int,
        message_id: str,
        payload: bytes,
        accepted: dict[str, SmtpReply],
        outcomes: list[Outcome],
    ) -> None:
        """Keep ``payload`` for the next write; see :class:`_Held`."""
        assert self._held is None, "one message's content is held at a time"
        self._held = _Held(index, message_id, payload, accepted, outcomes)

    def write(self, commands: list[str]) -> str | None:
        """Write a pipelined group of ``commands``, led by the held content if
        any, and settle the held message.

        Returns:
            None if the connection can go on with ``commands``' replies; else
            why not: it was lost, or closed with 421, before the held
            message's dot was answered.

        Raises:
            ConnectionLost: the write failed; the held message is settled.
        """
        held, self._held = self._held, None
        if held is None:
            self._link.write(commands, self._link.timeouts.mail)
            return None
        try:
            timeout = self._link.timeouts.data_block
            self._link.write(commands, timeout, before=held.payload)
        except ConnectionLost as exc:
            self._unsent(held, str(exc))
            raise
        reply = self._answer(held, last=False)
        if reply is None:
            return "connection lost before the previous message's end was answered"
        if not self._link.alive:
            return f"{self._link.label} closed the connection before MAIL: {reply}"
        return None

    def flush(self) -> None:
        """Send the held content, if any, on its own and read the dot's reply."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            self._link.write([], self._link.timeouts.data_block, before=held.payload)
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
            reply = self._link.reply(
                self._link.timeouts.data_done, SmtpStep.END_OF_DATA
            )
        except ConnectionLost as exc:
            if exc.reset and last:
                self._unsent(held, str(exc))
                return None
            log.warning(
                "no reply from %s after the end of message %s; it may be delivered "
                "more than once",
                self._link.label,
                held.message_id,
            )
            detail = f"no reply after the end of the message: {exc}"
            held.outcomes.extend(
                self._outcomes.one(
                    a,
                    DeliveryResult.DEFERRED,
                    BAD_CONNECTION,
                    detail,
                    possibly_delivered=True,
                    rcpt_reply=rcpt,
                )
                for a, rcpt in held.accepted.items()
            )
            self._settled(held.index, held.outcomes)
            return None
        held.outcomes.extend(
            self._outcomes.from_reply(a, reply, rcpt)
            for a, rcpt in held.accepted.items()
        )
        self._settled(held.index, held.outcomes)
        return reply

    def _unsent(self, held: _Held, reason: str) -> None:
        detail = (
            f"connection lost before the server read the end of the message: {reason}"
        )
        held.outcomes.extend(
            self._outcomes.alike(
                held.accepted,
                DeliveryResult.DEFERRED,
                BAD_CONNECTION,
                detail,
                rcpt=held.accepted,
            )
        )
        self._settled(held.index, held.outcomes)
