"""What the dashboard needs of a queue: the queue-administration methods
(``find``, ``count``, ``kick``, ``hold``, ``release``, ``fail``, ``drop``, each with a
:class:`~mailstrom_py.QueueFilter`) and the two reads ``status`` and ``email``.

It is a protocol, so any storage that offers these methods serves, whatever
class it derives from: the dashboard never claims, records or adds mail.
"""

from __future__ import annotations

from typing import Protocol

from ..message import PreparedEmail
from ..status import MessageStatus
from ..storage import QueueFilter

__all__ = ["QueueSource"]


class QueueSource(Protocol):
    """The part of a storage backend the dashboard reads and acts through."""

    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        """The statuses of the selected messages, oldest first."""

    def count(self, where: QueueFilter) -> int:
        """How many messages ``where`` selects."""

    def kick(self, where: QueueFilter, now: float) -> list[str]:
        """Make the selected messages due at ``now``; return their ids."""

    def hold(self, where: QueueFilter) -> list[str]:
        """Put the selected messages on hold; return the ids held."""

    def release(self, where: QueueFilter) -> list[str]:
        """Take the selected messages off hold; return the ids released."""

    def fail(self, where: QueueFilter, now: float) -> list[MessageStatus]:
        """Fail the pending recipients of the selected messages; return the
        statuses of the messages failed."""

    def drop(self, where: QueueFilter) -> list[str]:
        """Remove the selected messages; return the ids removed."""

    def status(self, message_id: str) -> MessageStatus:
        """The status of one message (``MessageNotFound`` when unknown)."""

    def email(self, message_id: str) -> PreparedEmail:
        """The stored message (``MessageNotFound`` when unknown)."""
