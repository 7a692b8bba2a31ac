"""In-memory storage: fast, and gone when the process exits."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Sequence

from ..errors import DuplicateMessageError, MessageNotFound
from ..message import PreparedEmail
from ..status import MessageStatus, RecipientStatus
from .admin import QueueAdmin
from .base import Claim, Storage, check_distinct
from .query import QueueFilter
from .rules import attempt_begun, initial_status, is_claimable, merge_recipients

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage, QueueAdmin):
    """Keeps messages and statuses in dictionaries guarded by one lock.

    Queued mail is lost when the process exits: pick
    :class:`~mailstrom_py.SqliteStorage` when mail must survive a restart.
    Thread-safe; every method is atomic.
    """

    durable = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._emails: dict[str, PreparedEmail] = {}
        self._statuses: dict[str, MessageStatus] = {}
        # When each message that may be attempted (pending, not held) is due,
        # so due() looks at one float per such message and nothing else.
        self._due: dict[str, float] = {}
        # Completed messages that recent() has returned.
        self._reported: set[str] = set()
        # The order messages were added in, which breaks ties in created_at.
        self._order: dict[str, int] = {}
        self._added = itertools.count()

    def add(self, email: PreparedEmail, now: float) -> MessageStatus:
        status = initial_status(email, now)
        with self._lock:
            if email.message_id in self._emails:
                raise DuplicateMessageError(email.message_id)
            self._insert(email, status, now)
        return status

    def add_many(
        self, emails: Sequence[PreparedEmail], now: float
    ) -> list[MessageStatus]:
        check_distinct(emails)
        statuses = [initial_status(email, now) for email in emails]
        with self._lock:
            for email in emails:
                if email.message_id in self._emails:
                    raise DuplicateMessageError(email.message_id)
            for email, status in zip(emails, statuses, strict=True):
                self._insert(email, status, now)
        return statuses

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
        claims = self.claim([message_id], now, lambda _: retry_at)
        return claims[0].status if claims else None

    def claim(
        self,
        message_ids: Sequence[str],
        now: float,
        retry_at: Callable[[MessageStatus], float],
    ) -> list[Claim]:
        with self._lock:
            claimed = []
            for message_id in dict.fromkeys(message_ids):
                before = self._statuses.get(message_id)
                if before is not None and is_claimable(before, now):
                    after = attempt_begun(before, now, retry_at(before))
                    claimed.append(Claim(before, after, self._emails[message_id]))
            # Stored only once every retry_at has returned: all or nothing.
            for claim in claimed:
                self._put(claim.status)
            return claimed

    def record(
        self, message_id: str, updates: Sequence[RecipientStatus]
    ) -> MessageStatus:
        [status] = self.record_many([(message_id, updates)])
        if status is None:
            raise MessageNotFound(message_id)
        return status

    def record_many(
        self, records: Sequence[tuple[str, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        with self._lock:
            recorded: list[MessageStatus | None] = []
            for message_id, updates in records:
                current = self._statuses.get(message_id)
                if current is None:
                    recorded.append(None)
                    continue
                status = merge_recipients(current, updates)
                self._put(status)
                recorded.append(status)
            return recorded

    def due(self, until: float, limit: int) -> list[tuple[float, str]]:
        with self._lock:
            found = [(due, i) for i, due in self._due.items() if due <= until]
        # A sort in C beats heapq.nsmallest's loop in Python for a large limit.
        found.sort()
        del found[limit:]
        return found

    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        with self._lock:
            return self._select(where)[:limit]

    def count(self, where: QueueFilter) -> int:
        with self._lock:
            return len(self._select(where))

    def kick(self, where: QueueFilter, now: float) -> list[str]:
        with self._lock:
            kicked = []
            for status in self._select(where):
                if status.completed:
                    continue
                self._put(
                    dataclasses.replace(
                        status,
                        recipients=tuple(
                            dataclasses.replace(r, next_attempt_at=now)
                            if not r.completed
                            and (r.next_attempt_at is None or r.next_attempt_at > now)
                            else r
                            for r in status.recipients
                        ),
                    )
                )
                kicked.append(status.message_id)
            return kicked

    def hold(self, where: QueueFilter) -> list[str]:
        with self._lock:
            return self._set_held(
                [s for s in self._select(where) if not s.completed and not s.held],
                held=True,
            )

    def release(self, where: QueueFilter) -> list[str]:
        with self._lock:
            return self._set_held(
                [s for s in self._select(where) if s.held], held=False
            )

    def drop(self, where: QueueFilter) -> list[str]:
        with self._lock:
            dropped = [s.message_id for s in self._select(where)]
            for message_id in dropped:
                del self._emails[message_id], self._statuses[message_id]
                del self._order[message_id]
                self._due.pop(message_id, None)
                self._reported.discard(message_id)
            return dropped

    def recent(self, limit: int | None = None) -> list[MessageStatus]:
        with self._lock:
            everything = self._select(QueueFilter())
            fresh = [
                s
                for s in everything
                if s.completed and s.message_id not in self._reported
            ][:limit]
            self._reported.update(s.message_id for s in fresh)
            room = None if limit is None else limit - len(fresh)
            return fresh + [s for s in everything if not s.completed][:room]

    def _select(self, where: QueueFilter) -> list[MessageStatus]:
        if where.ids:
            candidates = [
                self._statuses[i]
                for i in dict.fromkeys(where.ids)
                if i in self._statuses
            ]
        else:
            candidates = list(self._statuses.values())
        selected = [s for s in candidates if where.matches(s)]
        selected.sort(key=lambda s: (s.created_at, self._order[s.message_id]))
        return selected

    def _set_held(self, statuses: list[MessageStatus], *, held: bool) -> list[str]:
        for status in statuses:
            self._put(dataclasses.replace(status, held=held))
        return [s.message_id for s in statuses]

    def _get(self, message_id: str) -> MessageStatus:
        try:
            return self._statuses[message_id]
        except KeyError:
            raise MessageNotFound(message_id) from None

    def _put(self, status: MessageStatus) -> None:
        self._statuses[status.message_id] = status
        due = status.next_attempt_at
        if status.held or due is None:
            self._due.pop(status.message_id, None)
        else:
            self._due[status.message_id] = due

    def _insert(self, email: PreparedEmail, status: MessageStatus, now: float) -> None:
        message_id = email.message_id
        self._emails[message_id] = email
        self._statuses[message_id] = status
        self._order[message_id] = next(self._added)
        # What _put() would work out: a new message is due now, unless it has no
        # recipients at all (the derived values of a status are costly to compute).
        if status.recipients:
            self._due[message_id] = now
