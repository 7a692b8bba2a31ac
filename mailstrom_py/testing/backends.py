"""Test doubles for storage."""

from __future__ import annotations

from collections.abc import Sequence

from ..message import PreparedEmail
from ..status import MessageStatus, RecipientStatus
from ..storage import Claim, MemoryStorage, QueueAdmin, QueueFilter, Storage
from ..storage.controls import MemoryControls

__all__ = ["AbstractOnly"]


class AbstractOnly(Storage, QueueAdmin, MemoryControls):
    """A backend with only the abstract methods of :class:`~mailstrom_py.Storage`
    and :class:`~mailstrom_py.storage.QueueAdmin`, each delegated to a
    MemoryStorage; its delivery controls are a
    :class:`~mailstrom_py.storage.controls.MemoryControls` of its own.

    Run through the contract suite, it checks the base classes' own
    implementations of the other methods (``add``, ``record``, ``count``...).
    """

    def __init__(self) -> None:
        MemoryControls.__init__(self)
        self.inner = MemoryStorage()

    def add_many(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        return self.inner.add_many(emails, now, send_at=send_at)

    def status(self, message_id: str) -> MessageStatus:
        return self.inner.status(message_id)

    def email(self, message_id: str) -> PreparedEmail:
        return self.inner.email(message_id)

    def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        return self.inner.claim_due(now, limit, lease)

    def next_due(self) -> float | None:
        return self.inner.next_due()

    def record_many(
        self, records: Sequence[tuple[Claim, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        return self.inner.record_many(records)

    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        return self.inner.find(where, limit)

    def kick(self, where: QueueFilter, now: float) -> list[str]:
        return self.inner.kick(where, now)

    def hold(self, where: QueueFilter) -> list[str]:
        return self.inner.hold(where)

    def release(self, where: QueueFilter) -> list[str]:
        return self.inner.release(where)

    def schedule(self, where: QueueFilter, at: float, now: float) -> list[str]:
        return self.inner.schedule(where, at, now)

    def fail(self, where: QueueFilter, now: float) -> list[MessageStatus]:
        return self.inner.fail(where, now)

    def drop(self, where: QueueFilter) -> list[str]:
        return self.inner.drop(where)

    def recent(self, limit: int | None = None) -> list[MessageStatus]:
        return self.inner.recent(limit)
