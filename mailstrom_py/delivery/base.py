"""What a transport is and what it reports back for each recipient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..message import PreparedEmail
from ..status import DeliveryResult, Remote, SmtpReply

__all__ = ["BatchTransport", "Item", "Outcome", "Transport", "deliver_many"]

#: One message of a batch: the prepared message and the recipients to send it to.
Item = tuple[PreparedEmail, Sequence[str]]


@dataclass(frozen=True)
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
    """

    address: str
    result: DeliveryResult
    status_code: str
    detail: str
    reply: SmtpReply | None = None
    possibly_delivered: bool = False
    remote: Remote | None = None


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


@runtime_checkable
class BatchTransport(Transport, Protocol):
    """**Protocol:** a :class:`Transport` that can also deliver several messages
    in one go, e.g. over one connection, pipelined (RFC 2920).

    ``deliver_many`` returns one outcome list per item of the batch, in the
    batch's order, each holding one outcome per recipient of its item, and
    keeps ``deliver``'s other rules: no exceptions but for bugs, a timeout on
    every network step, safe to call from several threads at once.
    """

    def deliver_many(self, batch: Sequence[Item]) -> list[list[Outcome]]:
        """Attempt delivery of each item of ``batch``; see the class docstring."""
        ...  # pragma: no cover


def deliver_many(transport: Transport, batch: Sequence[Item]) -> list[list[Outcome]]:
    """Deliver each ``(email, recipients)`` item of ``batch`` through ``transport``.

    Uses the transport's own ``deliver_many`` when it has one (a
    :class:`BatchTransport`), else calls ``deliver`` for each item in turn, so a
    transport written against :class:`Transport` alone keeps working.

    Returns:
        One list of outcomes per item, in the order of ``batch``.
    """
    if isinstance(transport, BatchTransport):
        return transport.deliver_many(batch)
    return [transport.deliver(email, recipients) for email, recipients in batch]
