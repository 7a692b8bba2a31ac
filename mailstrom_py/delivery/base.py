"""What a transport is and what it reports back for each recipient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..message import PreparedEmail
from ..status import DeliveryResult, Remote, SmtpReply

__all__ = ["Outcome", "Transport"]


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
