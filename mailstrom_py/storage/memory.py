"""In-memory storage: fast, and gone when the process exits."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from ..errors import DuplicateMessageError, MessageNotFound
from ..message import PreparedEmail
from ..status import MessageStatus, RecipientStatus
from .base import Storage, initial_status, merge_recipients

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Keeps messages and statuses in dictionaries guarded by one lock.

    Queued mail is lost when the process exits: pick
    :class:`~mailstrom_py.SqliteStorage` when mail must survive a restart.
    Thread-safe; every method is atomic.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._emails: dict[str, PreparedEmail] = {}
        self._statuses: dict[str, MessageStatus] = {}
        # The ids with pending recipients, so due() does not walk delivered mail.
        self._incomplete: set[str] = set()

    def add(self, email: PreparedEmail, now: float) -> MessageStatus:
        status = initial_status(email, now)
        with self._lock:
            if email.message_id in self._emails:
                raise DuplicateMessageError(email.message_id)
            self._emails[email.message_id] = email
            self._put(status)
        return status

    def status(self, message_id: str) -> MessageStatus:
        with self._lock:
            return self._get(message_id)

    def email(self, message_id: str) -> PreparedEmail:
        with self._lock:
            try:
                return self._emails[message_id]
            except KeyError:
                raise MessageNotFound(message_id) from None

    def begin_attempt(
        self, message_id: str, now: float, retry_at: float
    ) -> MessageStatus | None:
        with self._lock:
            status = self._statuses.get(message_id)
            if status is None or status.held or status.completed:
                return None
            due = status.next_attempt_at
            if due is not None and due > now:
                return None
            claimed = dataclasses.replace(
                status,
                recipients=tuple(
                    r
                    if r.completed
                    else dataclasses.replace(
                        r,
                        attempts=r.attempts + 1,
                        last_attempt_at=now,
                        next_attempt_at=retry_at,
                    )
                    for r in status.recipients
                ),
            )
            self._put(claimed)
            return claimed

    def record(
        self, message_id: str, updates: Sequence[RecipientStatus]
    ) -> MessageStatus:
        with self._lock:
            status = merge_recipients(self._get(message_id), updates)
            self._put(status)
            return status

    def due(self, until: float, limit: int) -> list[tuple[float, str]]:
        with self._lock:
            found = []
            for message_id in self._incomplete:
                status = self._statuses[message_id]
                due = status.next_attempt_at
                if not status.held and due is not None and due <= until:
                    found.append((due, message_id))
        found.sort()
        return found[:limit]

    def _get(self, message_id: str) -> MessageStatus:
        try:
            return self._statuses[message_id]
        except KeyError:
            raise MessageNotFound(message_id) from None

    def _put(self, status: MessageStatus) -> None:
        self._statuses[status.message_id] = status
        if status.completed:
            self._incomplete.discard(status.message_id)
        else:
            self._incomplete.add(status.message_id)
