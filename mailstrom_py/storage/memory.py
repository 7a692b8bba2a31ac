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
from .controls import MemoryControls
from .journal import EventJournal, JournalEntry, check_journal
from .query import QueueFilter
from .rules import (
    attempt_begun,
    due_at,
    failed_by_operator,
    initial_status,
    lease_extended,
    merge_recipients,
    scheduled,
)

__all__ = ["MemoryStorage"]

# Stale heap entries tolerated beyond one per message before the heap is rebuilt.
_SLACK = 1024


class MemoryStorage(Storage, QueueAdmin, EventJournal, MemoryControls):
    """Keeps messages and statuses in dictionaries guarded by one lock.

    Queued mail is lost when the process exits: pick
    :class:`~mailstrom_py.SqliteStorage` when mail must survive a restart.
    Thread-safe; every method is atomic. Claims hold within this process only,
    the only one that sees the storage. Its event journal, too, lives as long
    as the process.
    """

    durable = False

    def __init__(self) -> None:
        MemoryControls.__init__(self)
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
        # The same for claims as they are made, due when their lease ends: most
        # are recorded before that, which leaves their entry stale, so they
        # have a heap of their own, cleared as the claims live, not as the
        # whole queue, grow.
        self._leases: list[tuple[float, int, str]] = []
        # Completed messages that recent() has returned.
        self._reported: set[str] = set()
        # The order messages were added in, which breaks ties in created_at.
        self._order: dict[str, int] = {}
        self._added = itertools.count()
        self._journal: list[JournalEntry] = []
        self._journal_ids = itertools.count(1)

    def add(
        self, email: PreparedEmail, now: float, *, send_at: float | None = None
    ) -> MessageStatus:
        status = initial_status(email, now, send_at)
        with self._lock:
            if email.message_id in self._emails:
                raise DuplicateMessageError(email.message_id)
            self._insert(email, status)
        return status

    def add_many(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        return self.add_journaled(emails, now, (), send_at=send_at)

    def add_journaled(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        events: Sequence[str],
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        check_distinct(emails)
        statuses = [initial_status(email, now, send_at) for email in emails]
        with self._lock:
            for email in emails:
                if email.message_id in self._emails:
                    raise DuplicateMessageError(email.message_id)
            for email, status in zip(emails, statuses, strict=True):
                self._insert(email, status)
            self._write_events(events)
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
            statuses, tokens, emails = self._statuses, self._tokens, self._emails
            while len(claims) < limit and (message_id := self._pop_due(now)):
                before = statuses[message_id]
                after = attempt_begun(before, now, until)
                tokens[message_id] = token = new_token()
                statuses[message_id] = after
                # What _put() would work out: a message due (so neither held
                # nor complete) is due again when the claim's lease ends.
                self._lease_ends(message_id, until)
                claims.append(Claim(before, after, emails[message_id], token))
            return claims

    def next_due(self) -> float | None:
        with self._lock:
            first = self._first()
            return None if first is None else first[0][0]

    def record_many(
        self, records: Sequence[tuple[Claim, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        with self._lock:
            return [self._record(claim, updates) for claim, updates in records]

    def record_journaled(
        self,
        records: Sequence[tuple[Claim, Sequence[RecipientStatus]]],
        events: Sequence[Sequence[str]],
    ) -> list[MessageStatus | None]:
        check_journal(records, events)
        with self._lock:
            recorded: list[MessageStatus | None] = []
            for (claim, updates), written in zip(records, events, strict=True):
                status = self._record(claim, updates)
                if status is not None:
                    self._write_events(written)
                recorded.append(status)
            return recorded

    def _record(
        self, claim: Claim, updates: Sequence[RecipientStatus]
    ) -> MessageStatus | None:
        """:meth:`record`, the lock held."""
        message_id = claim.status.message_id
        if self._tokens.get(message_id) != claim.token:
            return None
        del self._tokens[message_id]
        status = merge_recipients(self._statuses[message_id], updates)
        self._put(status)
        return status

    def take_events(self, limit: int) -> list[JournalEntry]:
        with self._lock:
            return self._journal[:limit]

    def ack_events(self, ids: Sequence[int]) -> None:
        gone = set(ids)
        with self._lock:
            self._journal = [e for e in self._journal if e.id not in gone]

    def _write_events(self, events: Sequence[str]) -> None:
        self._journal.extend(JournalEntry(next(self._journal_ids), e) for e in events)

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

    def schedule(self, where: QueueFilter, at: float, now: float) -> list[str]:
        with self._lock:
            changed = []
            for status in self._select(where):
                if status.completed or self._claimed(status, now):
                    continue
                self._put(scheduled(status, at))
                changed.append(status.message_id)
            return changed

    def fail(self, where: QueueFilter, now: float) -> list[MessageStatus]:
        with self._lock:
            failed = []
            for status in self._select(where):
                if status.completed:
                    continue
                after = failed_by_operator(status)
                self._tokens.pop(status.message_id, None)  # the claim ends
                self._put(after)
                failed.append(after)
            return failed

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
        emails = self._emails
        selected = [
            s for s in candidates if where.matches(s, emails[s.message_id].mail_from)
        ]
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
        else:
            self._due_again(message_id, due)

    def _due_again(self, message_id: str, due: float) -> None:
        """Make ``message_id`` due at ``due`` (rules.due_at of its status)."""
        if self._due.get(message_id) == due:
            return
        self._due[message_id] = due
        heapq.heappush(self._heap, (due, self._order[message_id], message_id))
        if len(self._heap) > 2 * len(self._due) + _SLACK:
            self._heap = [(d, self._order[i], i) for i, d in self._due.items()]
            heapq.heapify(self._heap)

    def _lease_ends(self, message_id: str, until: float) -> None:
        """Make the message just claimed due at ``until``, when the lease ends."""
        order, due, leases = self._order, self._due, self._leases
        due[message_id] = until
        heapq.heappush(leases, (until, order[message_id], message_id))
        if len(leases) > 2 * len(self._tokens) + _SLACK:
            live = [(due[i], order[i], i) for i in self._tokens if i in due]
            heapq.heapify(live)
            self._leases = live

    def _pop_due(self, now: float) -> str | None:
        """Take the message due first off its heap if it is due at ``now``."""
        first = self._first()
        if first is None or first[0][0] > now:
            return None
        return heapq.heappop(first)[2]

    def _first(self) -> list[tuple[float, int, str]] | None:
        """The heap whose first entry is the message due first, stale entries
        dropped; None when nothing is due."""
        heap, leases = self._drop_stale(self._heap), self._drop_stale(self._leases)
        if not leases:
            return heap or None
        if not heap:
            return leases
        return heap if heap[0] <= leases[0] else leases

    def _drop_stale(
        self, heap: list[tuple[float, int, str]]
    ) -> list[tuple[float, int, str]]:
        due = self._due
        while heap and due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap

    def _insert(self, email: PreparedEmail, status: MessageStatus) -> None:
        message_id = email.message_id
        order = next(self._added)
        self._emails[message_id] = email
        self._statuses[message_id] = status
        self._order[message_id] = order
        # What _put() would work out: a new message is due when its recipients
        # are, unless it has none at all (the derived values of a status are
        # costly to compute).
        due = status.recipients[0].next_attempt_at if status.recipients else None
        if due is not None:
            self._due[message_id] = due
            heapq.heappush(self._heap, (due, order, message_id))
