"""Events: frozen values saying what happened to a message, and the small
interface through which the producers (the outbox, the worker) hand them on.

The values live here, below the worker, so the worker can build them without
knowing who listens; :mod:`mailstrom_py.events` dispatches them to listeners,
posts them to webhooks and counts them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .bounce import BounceCategory, classify
from .codes import RECIPIENT_SUPPRESSED
from .status import DeliveryResult, RecipientStatus, Remote, SmtpReply, SmtpStep

__all__ = [
    "NO_EVENTS",
    "SUPPRESSED_DETAIL",
    "Event",
    "EventKind",
    "EventSink",
    "Slot",
    "outcome_events",
    "started_events",
]


class EventKind(enum.StrEnum):
    """What an :class:`Event` reports. A ``StrEnum``: ``kind == "delivered"``."""

    QUEUED = "queued"
    ATTEMPT_STARTED = "attempt_started"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"
    POSSIBLY_DELIVERED = "possibly_delivered"
    SUPPRESSED = "suppressed"
    DSN_QUEUED = "dsn_queued"
    TLS = "tls"


@dataclass(frozen=True, init=False)
class Event:
    """One thing that happened to a message or one of its recipients.

    Attributes:
        kind: what happened.
        message_id: the message's id, as ``send_email()`` returned it.
        recipient: the recipient concerned, or None for an event about the
            whole message or a session (``tls``, ``dsn_queued``).
        time: when it happened, in seconds since the epoch.
        status_code: the RFC 3463 code of an outcome.
        detail: the outcome in words.
        reply: the server reply that decided an outcome, if one did.
        destination: the server talked to (its host name), if any.
        category: why a recipient was deferred or failed.
        attempts: the recipient's attempts so far (outcomes, ``attempt_started``).
        next_attempt_at: when a deferred recipient is due again.
        tls_version: for ``tls``, the TLS version, None for plaintext.
        tls_verified: for ``tls``, whether the certificate was verified.
        report_id: for ``dsn_queued``, the id of the report queued.
        queued_at: for outcomes, when the message was queued (``time`` minus
            it is the delivery latency).
    """

    kind: EventKind
    message_id: str
    recipient: str | None
    time: float
    status_code: str | None = None
    detail: str | None = None
    reply: SmtpReply | None = None
    destination: str | None = None
    category: BounceCategory | None = None
    attempts: int | None = None
    next_attempt_at: float | None = None
    tls_version: str | None = None
    tls_verified: bool | None = None
    report_id: str | None = None
    queued_at: float | None = None

    def __init__(  # noqa: PLR0917 (the dataclass's signature, positions and all)
        self,
        kind: EventKind,
        message_id: str,
        recipient: str | None,
        time: float,
        status_code: str | None = None,
        detail: str | None = None,
        reply: SmtpReply | None = None,
        destination: str | None = None,
        category: BounceCategory | None = None,
        attempts: int | None = None,
        next_attempt_at: float | None = None,
        tls_version: str | None = None,
        tls_verified: bool | None = None,
        report_id: str | None = None,
        queued_at: float | None = None,
    ) -> None:
        # The dataclass's own __init__, written out to fill the frozen
        # instance's __dict__ directly rather than through object.__setattr__
        # field by field: events are built for every delivery, and this takes
        # a third of the time. Same fields, order and defaults.
        fields = self.__dict__
        fields["kind"] = kind
        fields["message_id"] = message_id
        fields["recipient"] = recipient
        fields["time"] = time
        fields["status_code"] = status_code
        fields["detail"] = detail
        fields["reply"] = reply
        fields["destination"] = destination
        fields["category"] = category
        fields["attempts"] = attempts
        fields["next_attempt_at"] = next_attempt_at
        fields["tls_version"] = tls_version
        fields["tls_verified"] = tls_verified
        fields["report_id"] = report_id
        fields["queued_at"] = queued_at

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON-ready values; None fields are left out."""
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "message_id": self.message_id,
            "recipient": self.recipient,
            "time": self.time,
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.category is not None:
            out["category"] = self.category.value
        if self.reply is not None:
            reply = self.reply
            out["reply"] = {
                "code": reply.code,
                "enhanced": reply.enhanced,
                "text": reply.text,
                "step": None if reply.step is None else reply.step.value,
            }
        return out

    def to_json(self) -> str:
        """The event as a compact JSON object (:meth:`to_dict`)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """The event :meth:`to_dict` made ``data`` from.

        Raises:
            ValueError: ``data`` is not such a dict (a ``KeyError`` or an
                unknown kind are reported as ``ValueError``).
        """
        try:
            reply = data.get("reply")
            category = data.get("category")
            return cls(
                kind=EventKind(data["kind"]),
                message_id=str(data["message_id"]),
                recipient=data["recipient"],
                time=float(data["time"]),
                category=None if category is None else BounceCategory(category),
                reply=None
                if reply is None
                else SmtpReply(
                    int(reply["code"]),
                    reply["enhanced"],
                    str(reply["text"]),
                    None if reply["step"] is None else SmtpStep(reply["step"]),
                ),
                **{name: data.get(name) for name in _OPTIONAL},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an event: {exc!r}") from exc


_OPTIONAL = (
    "status_code",
    "detail",
    "destination",
    "attempts",
    "next_attempt_at",
    "tls_version",
    "tls_verified",
    "report_id",
    "queued_at",
)


class Slot(Protocol):
    """**Protocol:** a place in the event stream reserved ahead of the events
    that fill it, so that events of a step stay in order with events other
    threads emit after the step (a claim that follows a record, say)."""

    def fill(self, events: Sequence[Event]) -> None:
        """Put ``events`` (maybe none) in the slot; call exactly once."""
        ...  # pragma: no cover

    @property
    def heard(self) -> bool:
        """Whether events filling the slot now would reach anyone (a listener
        or an observer). A producer that does not journal its events may
        leave them unbuilt and fill the slot empty when it is False."""
        ...  # pragma: no cover


class EventSink(Protocol):
    """**Protocol:** where producers hand events. Methods return at once and
    never raise."""

    def reserve(self) -> Slot:
        """Reserve a slot for events yet to be known: those emitted later by
        any thread are handed on after the slot's."""
        ...  # pragma: no cover

    def emit(self, events: Sequence[Event]) -> None:
        """Hand on ``events`` now."""
        ...  # pragma: no cover

    @property
    def journaling(self) -> bool:
        """Whether producers write events into storage with their outcomes
        (for a durable webhook)."""
        ...  # pragma: no cover

    @property
    def heard(self) -> bool:
        """Whether events handed in now would reach anyone (a listener or an
        observer); when False, a producer that does not journal them need not
        build them."""
        ...  # pragma: no cover


class _NoSlot:
    heard = False

    def fill(self, events: Sequence[Event]) -> None:
        """Discard ``events``."""


class _NoEvents:
    journaling = False
    heard = False
    _slot = _NoSlot()

    def reserve(self) -> Slot:
        return self._slot

    def emit(self, events: Sequence[Event]) -> None:
        """Discard ``events``."""


#: A sink that discards everything: the default where no one listens.
NO_EVENTS: EventSink = _NoEvents()


def started_events(
    message_id: str, pending: Iterable[RecipientStatus], time: float
) -> list[Event]:
    """The ``attempt_started`` events of an attempt begun at ``time`` on the
    ``pending`` recipients of ``message_id``, as claimed (their ``attempts``
    counting this one)."""
    return [
        Event(
            EventKind.ATTEMPT_STARTED, message_id, r.address, time, attempts=r.attempts
        )
        for r in pending
    ]


def outcome_events(
    message_id: str,
    updates: Sequence[RecipientStatus],
    time: float,
    queued_at: float | None = None,
) -> list[Event]:
    """The events an attempt's recorded ``updates`` describe, recipient by
    recipient: ``possibly_delivered`` (when the connection was lost after the
    final dot), or ``suppressed`` (when the recipient is on the suppression
    list), before the recipient's ``delivered``, ``deferred`` or ``failed``.
    A ``tls`` event precedes them for each server talked to."""
    events = [_tls_event(message_id, remote, time) for remote in _remotes(updates)]
    for r in updates:
        if r.possibly_delivered:
            events.append(
                _outcome(EventKind.POSSIBLY_DELIVERED, message_id, r, time, queued_at)
            )
        elif _suppressed(r):
            events.append(
                _outcome(EventKind.SUPPRESSED, message_id, r, time, queued_at)
            )
        events.append(_outcome(_KINDS[r.result], message_id, r, time, queued_at))
    return events


#: How the detail of a recipient failed for being on the suppression list begins.
SUPPRESSED_DETAIL = "suppressed since"


def _suppressed(r: RecipientStatus) -> bool:
    """Whether ``r`` was failed for being on the suppression list."""
    return (
        r.result is DeliveryResult.FAILED
        and r.status_code == RECIPIENT_SUPPRESSED
        and (r.detail or "").startswith(SUPPRESSED_DETAIL)
    )


_KINDS = {
    DeliveryResult.DELIVERED: EventKind.DELIVERED,
    DeliveryResult.DEFERRED: EventKind.DEFERRED,
    DeliveryResult.FAILED: EventKind.FAILED,
    DeliveryResult.QUEUED: EventKind.QUEUED,
}


def _remotes(updates: Sequence[RecipientStatus]) -> list[Remote]:
    if len(updates) == 1:
        remote = updates[0].remote
        return [] if remote is None else [remote]
    return list(dict.fromkeys(r.remote for r in updates if r.remote is not None))


def _tls_event(message_id: str, remote: Remote, time: float) -> Event:
    return Event(
        EventKind.TLS,
        message_id,
        None,
        time,
        destination=remote.host,
        tls_version=remote.tls_version,
        tls_verified=remote.tls_verified,
    )


def _outcome(
    kind: EventKind,
    message_id: str,
    r: RecipientStatus,
    time: float,
    queued_at: float | None,
) -> Event:
    category = None
    if r.result is not DeliveryResult.DELIVERED:
        text = r.last_reply.text if r.last_reply is not None else r.detail
        category = classify(r.status_code, text)
    return Event(
        kind,
        message_id,
        r.address,
        time,
        status_code=r.status_code,
        detail=r.detail,
        reply=r.last_reply,
        destination=None if r.remote is None else r.remote.host,
        category=category,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        queued_at=queued_at,
    )
