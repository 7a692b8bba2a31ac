"""What a transport is and what it reports back for each recipient."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..message import PreparedEmail
from ..status import DeliveryResult, Remote, SmtpReply

__all__ = [
    "BatchTransport",
    "Item",
    "OnOutcome",
    "Outcome",
    "Transport",
    "deliver_many",
]

#: One message of a batch: the prepared message and the recipients to send it to.
Item = tuple[PreparedEmail, Sequence[str]]


@dataclass(frozen=True, init=False)
class Outcome:
    """What one delivery attempt did for one recipient.

    Attributes:
        address: the recipient.
        result: ``DELIVERED``, ``DEFERRED`` or ``FAILED`` (never ``QUEUED``).
        status_code: the RFC 3463 code of the outcome; its class agrees with ``result``.
        detail: the outcome in words.
        reply: the server reply that decided it, if a server decided it.
        possibly_delivered: the connection was lost after the final dot.
        remote: the server talked to, if a connection was made.
        rcpt_reply: the reply to the recipient's RCPT, if it was answered.
        held_until: set when no attempt was made because the destination is
            suspended or over its rate: the recipient is due again then, and
            the attempt is not counted (``result`` is ``DEFERRED``).
    """

    address: str
    result: DeliveryResult
    status_code: str
    detail: str
    reply: SmtpReply | None = None
    possibly_delivered: bool = False
    remote: Remote | None = None
    rcpt_reply: SmtpReply | None = None
    held_until: float | None = None

    def __init__(  # noqa: PLR0917 (the dataclass's signature, positions and all)
        self,
        address: str,
        result: DeliveryResult,
        status_code: str,
        detail: str,
        reply: SmtpReply | None = None,
        possibly_delivered: bool = False,
        remote: Remote | None = None,
        rcpt_reply: SmtpReply | None = None,
        held_until: float | None = None,
    ) -> None:
        # The dataclass's own __init__, written out to fill the frozen
        # instance's __dict__ directly (see RecipientStatus): an outcome is
        # built for every recipient delivered. Same fields, order, defaults.
        fields = self.__dict__
        fields["address"] = address
        fields["result"] = result
        fields["status_code"] = status_code
        fields["detail"] = detail
        fields["reply"] = reply
        fields["possibly_delivered"] = possibly_delivered
        fields["remote"] = remote
        fields["rcpt_reply"] = rcpt_reply
        fields["held_until"] = held_until


class Transport(Protocol):
    """**Protocol:** delivers a prepared message to some of its recipients.

    ``deliver`` returns one :class:`Outcome` per recipient asked for, in any order,
    and raises only on bugs: every network or protocol failure is an outcome. It
    must bound every network operation with a timeout. It may be called from
    several delivery threads at once.
    """

    def deliver(self, email: PreparedEmail, recipients: Sequence[str]) -> list[Outcome]:
        """Attempt delivery of ``email`` to ``recipients``; see the class docstring."""
        ...  # pragma: no cover

    def close(self) -> None:
        """Release any connections kept open; idempotent."""
        ...  # pragma: no cover


#: Told ``(index, outcomes)`` as soon as the outcomes of the batch's item
#: ``index`` are final. It runs between a session's replies, so it should be
#: quick, and it must not raise.
OnOutcome = Callable[[int, list[Outcome]], None]


@runtime_checkable
class BatchTransport(Transport, Protocol):
    """**Protocol:** a :class:`Transport` that can also deliver several messages
    in one go, e.g. over one connection, pipelined (RFC 2920).

    ``deliver_many`` returns one outcome list per item of the batch, in the
    batch's order, each holding one outcome per recipient of its item, and
    keeps ``deliver``'s other rules: no exceptions but for bugs, a timeout on
    every network step, safe to call from several threads at once.

    With ``on_outcome`` it also reports each item's outcomes as soon as they
    are final (after the reply to its final dot, say), once per item, before
    it returns: the caller records them while the rest of the batch is under
    way, so a crash repeats only the messages in flight.
    """

    def deliver_many(
        self, batch: Sequence[Item], on_outcome: OnOutcome | None = None
    ) -> list[list[Outcome]]:
        """Attempt delivery of each item of ``batch``; see the class docstring."""
        ...  # pragma: no cover


def deliver_many(
    transport: Transport, batch: Sequence[Item], on_outcome: OnOutcome | None = None
) -> list[list[Outcome]]:
    """Deliver each ``(email, recipients)`` item of ``batch`` through ``transport``.

    Uses the transport's own ``deliver_many`` when it has one (a
    :class:`BatchTransport`), else calls ``deliver`` for each item in turn, so a
    transport written against :class:`Transport` alone keeps working. Either
    way ``on_outcome``, if given, hears of each item's outcomes as soon as
    they are final, as :class:`BatchTransport` describes.

    Returns:
        One list of outcomes per item, in the order of ``batch``.
    """
    if isinstance(transport, BatchTransport):
        return transport.deliver_many(batch, on_outcome)
    results = []
    for index, (email, recipients) in enumerate(batch):
        outcomes = transport.deliver(email, recipients)
        if on_outcome is not None:
            on_outcome(index, outcomes)
        results.append(outcomes)
    return results
