"""What the contract's tests share: the messages they store, the steps they take."""

from __future__ import annotations

import dataclasses
from abc import ABC
from collections.abc import Mapping

from ...message import PreparedEmail
from ...status import DeliveryResult, MessageStatus, RecipientStatus
from ...storage import Claim, QueueAdmin, Storage
from ...storage.controls import Controls
from ..emails import prepared_email

__all__ = [
    "LEASE",
    "Backend",
    "attempt",
    "claim_one",
    "email",
    "finish",
    "ids",
    "mid",
    "outcome",
    "renamed",
]

#: The lease of the claims the tests make, in seconds.
LEASE = 60.0


class Backend(Storage, QueueAdmin, Controls, ABC):
    """What the contract's tests take, for type checkers: a :class:`Storage` that
    is a :class:`QueueAdmin` and keeps :class:`Controls` too. Backends need not
    subclass it."""


def email(
    n: int = 1, recipients: tuple[str, ...] = ("a@example.test", "b@example.test")
) -> PreparedEmail:
    """Message ``n`` (id ``m<n>@example.test``) to ``recipients``."""
    return prepared_email(n, *recipients)


def mid(n: int) -> str:
    """The id of message ``n``."""
    return f"m{n}@example.test"


def renamed(status: MessageStatus, n: int) -> MessageStatus:
    """`status` as if it belonged to message `n`: for comparing twin messages."""
    return dataclasses.replace(status, message_id=mid(n))


def outcome(
    status: MessageStatus, address: str, result: DeliveryResult, at: float | None
) -> RecipientStatus:
    """The status of ``address`` in ``status``, now ``result`` and due at ``at``."""
    return dataclasses.replace(
        status.recipient(address), result=result, next_attempt_at=at
    )


def claim_one(storage: Backend, message_id: str, now: float) -> Claim:
    """Claim ``message_id``, which must be the message due first at ``now``."""
    claims = storage.claim_due(now, 1, LEASE)
    assert [c.message_id for c in claims] == [message_id]
    return claims[0]


def attempt(
    storage: Backend,
    message_id: str,
    results: Mapping[str, tuple[DeliveryResult, float | None]],
) -> MessageStatus:
    """Claim a message at its due time and record ``results``, each recipient's
    result and next attempt by address, as the worker does after an attempt."""
    due = storage.status(message_id).next_attempt_at
    assert due is not None
    claim = claim_one(storage, message_id, due)
    recorded = storage.record(
        claim,
        [
            outcome(claim.status, address, result, at)
            for address, (result, at) in results.items()
        ],
    )
    assert recorded is not None
    return recorded


def finish(
    storage: Backend,
    message_id: str,
    address: str,
    result: DeliveryResult,
    next_attempt_at: float | None = None,
) -> MessageStatus:
    """:func:`attempt` with a result for one recipient."""
    return attempt(storage, message_id, {address: (result, next_attempt_at)})


def ids(statuses: list[MessageStatus]) -> list[int]:
    """The numbers of the messages ``statuses`` are about, in order."""
    return [int(s.message_id[1:].partition("@")[0]) for s in statuses]
