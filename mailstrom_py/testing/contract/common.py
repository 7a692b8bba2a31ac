"""What the contract's tests share: the messages they store and a step they repeat."""

from __future__ import annotations

import dataclasses
from abc import ABC

from ...message import PreparedEmail
from ...status import DeliveryResult, MessageStatus, RecipientStatus
from ...storage import QueueAdmin, Storage
from ..emails import prepared_email

__all__ = ["Backend", "email", "finish", "ids", "mid", "outcome", "renamed"]


class Backend(Storage, QueueAdmin, ABC):
    """What the contract's tests take, for type checkers: a :class:`Storage` that
    is a :class:`QueueAdmin` too. Backends need not subclass it."""


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
    return dataclasses.replace(
        status.recipient(address), result=result, next_attempt_at=at
    )


def finish(
    storage: Backend,
    message_id: str,
    address: str,
    result: DeliveryResult,
    next_attempt_at: float | None = None,
) -> None:
    """Record `result` for one recipient, as the worker would after an attempt."""
    current = storage.status(message_id).recipient(address)
    storage.record(
        message_id,
        [
            dataclasses.replace(
                current,
                result=result,
                attempts=current.attempts + 1,
                next_attempt_at=next_attempt_at,
            )
        ],
    )


def ids(statuses: list[MessageStatus]) -> list[int]:
    """The numbers of the messages ``statuses`` are about, in order."""
    return [int(s.message_id[1:].partition("@")[0]) for s in statuses]
