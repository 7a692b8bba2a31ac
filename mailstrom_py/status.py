"""Delivery status values: what became of each recipient of a message.

Everything here is a frozen value with no I/O. Times are seconds since the Unix
epoch (``time.time()``), as floats, so they store and compare cheaply.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any, Generic, Self, TypeVar, overload

__all__ = [
    "DeliveryResult",
    "MessageStatus",
    "RecipientStatus",
    "Remote",
    "SmtpReply",
    "SmtpStep",
]

_T = TypeVar("_T")

# RFC 3463 §2: class.subject.detail, the class being 2, 4 or 5.
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


class DeliveryResult(enum.StrEnum):
    """Where one recipient of a message stands.

    ``QUEUED``: not attempted yet. ``DEFERRED``: attempted, failed for a reason that may
    pass, and due again later. ``DELIVERED``: the receiving server accepted it.
    ``FAILED``: it will not be attempted again (refused for good, or retries ran out).
    """

    QUEUED = "queued"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"

    @property
    def completed(self) -> bool:
        """True for the two final results, ``DELIVERED`` and ``FAILED``."""
        return self is DeliveryResult.DELIVERED or self is DeliveryResult.FAILED


class SmtpStep(enum.StrEnum):
    """The step of an SMTP conversation that a server's reply answered.

    The greeting answers the connection; ``EHLO`` stands for HELO too, and
    ``AUTH`` for the whole exchange; ``END_OF_DATA`` is the reply to the final
    dot, the one that accepts or refuses the message.
    """

    GREETING = "greeting"
    EHLO = "EHLO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    END_OF_DATA = "end of data"


@dataclass(frozen=True)
class SmtpReply:
    """A reply from an SMTP server.

    Attributes:
        code: the three-digit reply code.
        enhanced: the RFC 3463 enhanced status code at the start of the text
            (``"5.1.1"``), or ``None`` when the server gave none.
        text: the rest of the reply; lines of a multi-line reply joined by newlines.
        step: the step the reply answered, or ``None`` when unknown (a reply
            recorded by a version of mailstrom_py that did not keep it).
    """

    code: int
    enhanced: str | None
    text: str
    step: SmtpStep | None = None

    @classmethod
    def parse(
        cls, code: int, message: bytes | str, step: SmtpStep | None = None
    ) -> SmtpReply:
        """Build a reply to ``step`` from what smtplib returns: a code and the
        reply text.

        An enhanced status code is recognised only when it opens the text.
        """
        if cls is SmtpReply:
            return _parse_reply(code, message, step)
        return cls._parse(code, message, step)

    @classmethod
    def _parse(
        cls, code: int, message: bytes | str, step: SmtpStep | None = None
    ) -> SmtpReply:
        text = (
            message.decode("utf-8", "replace")
            if isinstance(message, bytes)
            else message
        )
        match = _ENHANCED.match(text)
        if match is None:
            return cls(code, None, text, step)
        return cls(code, ".".join(match.groups()), text[match.end() :], step)

    def __str__(self) -> str:
        head = f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)
        return f"{head} {self.text}" if self.text else head


# Most replies repeat word for word ("250 2.1.5 Ok"), and a reply is a frozen
# value, so one parse serves them all.
_parse_reply = functools.lru_cache(maxsize=512)(SmtpReply._parse)


@dataclass(frozen=True)
class Remote:
    """The server an attempt talked to.

    Attributes:
        host: the name dialled (the relay or MX host name).
        address: the IP address connected to.
        port: the TCP port.
        tls_version: the TLS version (``"TLSv1.3"``), or ``None`` for plaintext.
        tls_verified: whether the server was authenticated: its certificate
            verified against ``host``, or matched by DANE TLSA records.
        tls_policy: the policy the session was held to, named as in RFC 8460
            reports: ``"sts"`` (MTA-STS), ``"tlsa"`` (DANE) or
            ``"no-policy-found"``; ``None`` when unknown (relay delivery, or a
            status recorded before policies were kept).
        tls_policy_domain: the domain that published the policy, RFC 8460's
            Policy Domain: the recipient domain, or for ``"tlsa"`` the TLSA
            base domain (the MX host name, or its CNAME-expanded name).
        tls_result: ``"success"``, or the RFC 8460 result type of the TLS
            failure (``"certificate-host-mismatch"``, ``"validation-failure"``,
            ``"starttls-not-supported"``...); ``None`` for a session that
            never tried TLS.
        tls_failure: the TLS failure in words, when there was one.
        tls_policy_strings: the policy as a TLS report gives it (RFC 8460
            §4.4 "policy-string"): for ``"sts"``, the lines of the MTA-STS
            policy as fetched; for ``"tlsa"``, every authenticated TLSA
            record found, usable or not, in presentation form; empty
            otherwise. Stored with the rest, so a TLS report built from a
            status read back from storage (after a restart, in another
            worker process) has them; a status recorded before they were
            kept has none.
    """

    host: str
    address: str
    port: int
    tls_version: str | None = None
    tls_verified: bool = False
    tls_policy: str | None = None
    tls_policy_domain: str | None = None
    tls_result: str | None = None
    tls_failure: str | None = None
    tls_policy_strings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The server as a JSON object, one key per attribute in their order
        (the policy strings a list), as the command line and the dashboard
        show it."""
        shown = {f.name: getattr(self, f.name) for f in dataclass_fields(self)}
        shown["tls_policy_strings"] = list(self.tls_policy_strings)
        return shown


@dataclass(frozen=True, init=False)
class RecipientStatus:
    """The delivery status of one recipient of one message.

    Attributes:
        address: the envelope recipient (domain in ASCII form).
        result: where the recipient stands.
        attempts: how many delivery attempts included this recipient.
        last_reply: the reply that decided the last attempt for this recipient, if
            a server gave one; its ``step`` says what it answered (``"end of
            data"`` for a delivered recipient, ``"MAIL"`` for a refused sender...).
        status_code: an RFC 3463 code for the outcome (``"2.0.0"``, ``"4.4.1"``,
            ``"5.1.1"``...): the server's, or one the library chose when the server
            said nothing (a refused connection, a timeout, retries exhausted).
        detail: the outcome in words, including what happened when no server replied.
        last_attempt_at: when the last attempt started, or ``None``.
        next_attempt_at: when the next attempt is due, or ``None`` once completed.
        possibly_delivered: the connection was lost after the final dot was sent
            but before the server confirmed it, so a retry may deliver a
            duplicate. A loss the server cannot have read the dot before (a
            failed write, a hang-up before the dot, a reset that discarded it
            unread) does not set it.
        remote: the server of the last attempt, when one answered.
        rcpt_reply: the reply to this recipient's RCPT in the last attempt, if it
            got that far: for a delivered recipient, the server's acceptance of
            the address (``last_reply`` being its acceptance of the message).
    """

    address: str
    result: DeliveryResult = DeliveryResult.QUEUED
    attempts: int = 0
    last_reply: SmtpReply | None = None
    status_code: str | None = None
    detail: str | None = None
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None
    possibly_delivered: bool = False
    remote: Remote | None = None
    rcpt_reply: SmtpReply | None = None

    def __init__(  # noqa: PLR0917 (the dataclass's signature, positions and all)
        self,
        address: str,
        result: DeliveryResult = DeliveryResult.QUEUED,
        attempts: int = 0,
        last_reply: SmtpReply | None = None,
        status_code: str | None = None,
        detail: str | None = None,
        last_attempt_at: float | None = None,
        next_attempt_at: float | None = None,
        possibly_delivered: bool = False,
        remote: Remote | None = None,
        rcpt_reply: SmtpReply | None = None,
    ) -> None:
        # The dataclass's own __init__, written out to fill the frozen
        # instance's __dict__ directly rather than through object.__setattr__
        # field by field: a status is built for every claim and outcome, and
        # this takes a third of the time. Same fields, order and defaults.
        fields = self.__dict__
        fields["address"] = address
        fields["result"] = result
        fields["attempts"] = attempts
        fields["last_reply"] = last_reply
        fields["status_code"] = status_code
        fields["detail"] = detail
        fields["last_attempt_at"] = last_attempt_at
        fields["next_attempt_at"] = next_attempt_at
        fields["possibly_delivered"] = possibly_delivered
        fields["remote"] = remote
        fields["rcpt_reply"] = rcpt_reply

    @property
    def completed(self) -> bool:
        """True once the recipient is ``DELIVERED`` or ``FAILED``."""
        result = self.result
        return result is DeliveryResult.DELIVERED or result is DeliveryResult.FAILED


# The results of RecipientStatus.completed, for the derived values of a
# MessageStatus (a set look-up costs less than a property per recipient).
_FINAL = frozenset((DeliveryResult.DELIVERED, DeliveryResult.FAILED))


class _derived(Generic[_T]):  # noqa: N801 (used as a decorator, like property)
    """A value computed from a frozen instance on first use and kept in its
    ``__dict__``, where later look-ups find it without calling back here.

    Unlike ``functools.cached_property`` on Python 3.11 it takes no lock: two
    threads racing to compute a value of a frozen instance compute the same one.
    """

    def __init__(self, compute: Callable[[Any], _T]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...

    def __get__(self, instance: object, owner: type | None = None) -> Self | _T:
        if instance is None:
            return self
        value = self._compute(instance)
        instance.__dict__[self._name] = value
        return value


@dataclass(frozen=True)
class MessageStatus:
    """The delivery status of a message: one :class:`RecipientStatus` per recipient.

    The derived values (``completed``, ``pending``...) are computed once per
    value: it is frozen, so they cannot change.

    Attributes:
        message_id: the id ``send_email()`` returned (the Message-ID without brackets).
        recipients: the recipients' statuses, in envelope order.
        created_at: when the message was stored.
        held: the message is on hold and will not be attempted until released.
        first_due_at: when the message was first due: the time it was
            scheduled for, or else when it was stored; a reschedule before
            any attempt moves it. ``None`` means ``created_at`` (a message
            stored before this was kept). The retry policy's ``max_age``
            counts from :attr:`retry_since`.
    """

    message_id: str
    recipients: tuple[RecipientStatus, ...]
    created_at: float
    held: bool = False
    first_due_at: float | None = None

    @classmethod
    def with_derived(
        cls,
        message_id: str,
        recipients: tuple[RecipientStatus, ...],
        created_at: float,
        held: bool = False,
        first_due_at: float | None = None,
    ) -> MessageStatus:
        """The status the constructor makes, with ``pending``, ``completed``
        and ``next_attempt_at`` worked out now, in one pass over
        ``recipients``: for a status whose derived values are sure to be read
        (one just claimed or recorded), it costs less than each on first use.
        """
        # The fields go straight into the instance's __dict__, which the
        # derived values need anyway; the dataclass's own __init__ stays for
        # statuses that are only stored (it keeps them without a __dict__).
        status = cls.__new__(cls)
        fields = status.__dict__
        fields["message_id"] = message_id
        fields["recipients"] = recipients
        fields["created_at"] = created_at
        fields["held"] = held
        fields["first_due_at"] = first_due_at
        pending = []
        due: float | None = None
        for r in recipients:
            if r.result not in _FINAL:
                pending.append(r)
                at = r.next_attempt_at
                if at is not None and (due is None or at < due):
                    due = at
        fields["pending"] = tuple(pending)
        fields["completed"] = not pending
        fields["next_attempt_at"] = due
        return status

    @property
    def retry_since(self) -> float:
        """When the retry policy's ``max_age`` starts counting: the later
        of ``created_at`` and ``first_due_at``."""
        first = self.first_due_at
        return self.created_at if first is None else max(self.created_at, first)

    @_derived
    def completed(self) -> bool:
        """True when every recipient is ``DELIVERED`` or ``FAILED``."""
        return not self.pending

    @_derived
    def succeeded(self) -> bool:
        """True when every recipient is ``DELIVERED``."""
        return all(r.result is DeliveryResult.DELIVERED for r in self.recipients)

    @_derived
    def pending(self) -> tuple[RecipientStatus, ...]:
        """The recipients still ``QUEUED`` or ``DEFERRED``."""
        return tuple([r for r in self.recipients if r.result not in _FINAL])

    @_derived
    def attempts(self) -> int:
        """The number of attempts made for the message (the most of any recipient)."""
        return max([r.attempts for r in self.recipients], default=0)

    @_derived
    def next_attempt_at(self) -> float | None:
        """When the message is next due: the earliest of its pending recipients."""
        due = [
            at
            for r in self.recipients
            if (at := r.next_attempt_at) is not None and r.result not in _FINAL
        ]
        return min(due, default=None)

    def recipient(self, address: str) -> RecipientStatus:
        """Return the status of ``address``.

        Raises:
            KeyError: the address is not a recipient of this message.
        """
        for r in self.recipients:
            if r.address == address:
                return r
        raise KeyError(address)
