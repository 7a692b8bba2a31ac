"""Which messages a queue operation applies to: :class:`QueueFilter`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidMessageError
from ..message.address import domain_to_ascii
from ..status import DeliveryResult, MessageStatus, RecipientStatus

__all__ = ["QueueFilter", "fold_case"]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_case(text: str) -> str:
    """Lower-case the ASCII letters of ``text`` and nothing else.

    Queue filters compare addresses and domains this way in every backend (it is
    what SQLite's ``NOCASE`` does), so a filter selects the same messages wherever
    they are stored.
    """
    if text.isascii():
        return text.lower()  # the same, for ASCII, and cheaper
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class QueueFilter:
    """Selects messages for the queue operations: list, count, kick, hold,
    release, schedule, fail and drop.

    A message is selected when every criterion that is set holds for it; the
    empty filter ``QueueFilter()`` selects every message. A filter that selects
    nothing is not an error: the operation does nothing.

    Attributes:
        ids: only messages with one of these ids; empty means any id.
        results: only messages with at least one recipient whose result is one
            of these; empty means any result.
        completed: ``True``: only messages whose recipients are all delivered or
            failed; ``False``: only messages with a pending (queued or deferred)
            recipient; ``None``: both.
        held: ``True``: only held messages; ``False``: only messages not held;
            ``None``: both.
        domain: only messages with a recipient at this domain. Given as Unicode
            or ASCII (``xn--``); ASCII letters are compared without case.
        recipient: only messages with this recipient address (ASCII letters
            compared without case).
        sender: only messages with this envelope sender (``MAIL FROM``), ASCII
            letters compared without case; ``""`` selects the messages with
            the null sender (delivery status notifications).
        created_before: only messages created before this time (seconds since
            the epoch).
        created_after: only messages created at or after this time.
    """

    ids: tuple[str, ...] = ()
    results: tuple[DeliveryResult, ...] = ()
    completed: bool | None = None
    held: bool | None = None
    domain: str | None = None
    recipient: str | None = None
    sender: str | None = None
    created_before: float | None = None
    created_after: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(self.ids))
        object.__setattr__(
            self, "results", tuple(DeliveryResult(r) for r in self.results)
        )
        if self.domain is not None:
            domain = self.domain.strip().rstrip(".").lstrip("@")
            try:
                domain = domain_to_ascii(domain, "domain")
            except InvalidMessageError:
                pass  # not a valid domain: it selects nothing, as it should
            object.__setattr__(self, "domain", fold_case(domain))

    def matches(self, status: MessageStatus, mail_from: str | None = None) -> bool:
        """Return whether the message with ``status`` is selected.

        Args:
            status: the message's status.
            mail_from: the message's envelope sender; needed when
                :attr:`sender` is set, since a status does not hold it.

        Raises:
            ValueError: :attr:`sender` is set and ``mail_from`` is not given.
        """
        if self.sender is not None:
            if mail_from is None:
                raise ValueError("a filter on the sender needs the message's sender")
            if fold_case(mail_from) != fold_case(self.sender):
                return False
        return self._matches_message(status) and self._matches_recipients(
            status.recipients
        )

    def _matches_message(self, status: MessageStatus) -> bool:
        """The criteria on the message itself."""
        before, after = self.created_before, self.created_after
        return (
            (not self.ids or status.message_id in self.ids)
            and (self.completed is None or status.completed is self.completed)
            and (self.held is None or status.held is self.held)
            and (before is None or status.created_at < before)
            and (after is None or status.created_at >= after)
        )

    def _matches_recipients(self, recipients: Sequence[RecipientStatus]) -> bool:
        """The criteria on the recipients: each holds for at least one of them."""
        if self.results and not any(r.result in self.results for r in recipients):
            return False
        domain = self.domain
        if domain is not None and not any(
            fold_case(r.address.rpartition("@")[2]) == domain for r in recipients
        ):
            return False
        if self.recipient is None:
            return True
        wanted = fold_case(self.recipient)
        return any(fold_case(r.address) == wanted for r in recipients)
