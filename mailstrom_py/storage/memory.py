"""In-memory storage: fast, and gone when the process exits."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import threading
from collections.abc import Sequence

from ..errors import DuplicateMessageError, MessageNotFound
from ..message import PreparedEmail
from ..status import MessageStatus, RecipientStatus
from .admin import QueueAdmin
from .base import Claim, Storage, check_claim, check_distinct, new_token
from .query import QueueFilter
from .rules import (
    attempt_begun,
    due_at,
    initial_status,
    lease_extended,
    merge_recipients,
)

__all__ = ["MemoryStorage"]

# Stale heap entries tolerated beyond one per message before the heap is rebuilt.
_SLACK = 1024


class MemoryStorage(Storage, QueueAdmin):
    """Keeps messages and statuses in dictionaries guarded by one lock.

    Queued mail is lost when the process exits: pick
    :class:`~mailstrom_py.SqliteStorage` when mail must survive a restart.
    Thread-safe; every method is atomic. Claims hold within this process only,
    the only one that sees the storage.
    """

    durable = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._emails: dict[str, PreparedEmail] = {}
        self._statuses: dict[str, MessageStatus] = {}
        # The token of each claim that has not ended.
        self._tokens: dict[str, str] = {}
        # When each message that is not held and has pending recipients is due
        # (rules.due_at), and a heap of (due, order added, id) over it: an entry
        # whose time no longer matches is stale and skipped when met.
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
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

    def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        check_claim(limit, lease)
        until = now + lease
        with self._lock:
            claims: list[Claim] = []
            while len(claims) < limit and (message_id := self._pop_due(now)):
                before = self._statuses[message_id]
                after = attempt_begun(before, now, until)
                token = new_token()
                self._tokens[message_id] = token
                self._put(after)
                claims.append(Claim(before, after, self._emails[message_id], token))
            return claims

    def next_due(self) -> float | None:
        with self._lock:
            self._drop_stale()
            return self._heap[0][0] if self._heap else None

    def record_many(
        self, records: Sequence[tuple[Claim, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        with self._lock:
            recorded: list[MessageStatus | None] = []
            for claim, updates in records:
                message_id = claim.message_id
                if self._tokens.get(message_id) != claim.token:
                    recorded.append(None)
                    continue
                del self._tokens[message_id]
                status = merge_recipients(self._statuses[message_id], updates)
                self._put(status)
                recorded.append(status)
            return recorded

    def extend(self, claims: Sequence[Claim], now: float, lease: float) -> list[bool]:
        check_claim(0, lease)
        with self._lock:
            extended = []
            for claim in claims:
                message_id = claim.message_id
                live = self._tokens.get(message_id) == claim.token
                if live:
                    self._put(lease_extended(self._statuses[message_id], now + lease))
                extended.append(live)
            return extended

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
                kicked.append(status.message_id)
                if self._claimed(status, now):
                    continue  # its attempt is under way; the outcome decides
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
                self._tokens.pop(message_id, None)
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

    def _claimed(self, status: MessageStatus, now: float) -> bool:
        """Whether ``status``'s message is under a claim whose lease lasts."""
        due = status.next_attempt_at
        return status.message_id in self._tokens and due is not None and due > now

    def _put(self, status: MessageStatus) -> None:
        message_id = status.message_id
        self._statuses[message_id] = status
        due = due_at(status)
        if due is None:
            self._due.pop(message_id, None)
        elif self._due.get(message_id) != due:
            self._due[message_id] = due
            heapq.heappush(self._heap, (due, self._order[message_id], message_id))
            if len(self._heap) > 2 * len(self._due) + _SLACK:
                self._heap = [(d, self._order[i], i) for i, d in self._due.items()]
                heapq.heapify(self._heap)

    def _pop_due(self, now: float) -> str | None:
        """Take the message due first off the heap if it is due at ``now``."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        return heapq.heappop(self._heap)[2]

    def _drop_stale(self) -> None:
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)

    def _insert(self, email: PreparedEmail, status: MessageStatus, now: float) -> None:
        message_id = email.message_id
        order = next(self._added)
        self._emails[message_id] = email
        self._statuses[message_id] = status
        self._order[message_id] = order
        # What _put() would work out: a new message is due now, unless it has no
        # recipients at all (the derived values of a status are costly to compute).
        if status.recipients:
            self._due[message_id] = now
            heapq.heappush(self._heap, (now, order, message_id))
