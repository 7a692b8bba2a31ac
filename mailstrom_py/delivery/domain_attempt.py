"""One delivery of a message to one domain's exchangers, address by address,
and the order of the addresses tried (for :mod:`~mailstrom_py.delivery.direct`).

Each exchanger's addresses are tried IPv6 and IPv4 alternately. Each attempt at a
message starts with the address family the previous attempt did not start with,
which :class:`FamilyMemory` remembers per message and exchanger.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..codes import NO_ANSWER_FROM_HOST
from ..message import PreparedEmail
from ..status import DeliveryResult
from .base import Outcome
from .routing.mx import MxHost
from .smtp import SessionFailure
from .unreached import deferred, unreached

__all__ = ["FAMILY_MEMORY_SIZE", "DomainAttempt", "FamilyMemory", "Target", "targets"]

#: How many (message, exchanger) pairs the address-family memory holds.
FAMILY_MEMORY_SIZE = 10_000


@dataclass(frozen=True)
class Target:
    """One address of one exchanger, to be tried."""

    host: str
    address: str


class FamilyMemory:
    """Which address family each (message, exchanger) pair was last tried with
    first; bounded and thread-safe (delivery threads share the transport)."""

    def __init__(self, size: int = FAMILY_MEMORY_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._first: OrderedDict[tuple[str, str], int] = OrderedDict()

    def previous(self, message_id: str, host: str) -> int | None:
        with self._lock:
            return self._first.get((message_id, host))

    def record(self, message_id: str, host: str, family: int) -> None:
        with self._lock:
            self._first[(message_id, host)] = family
            self._first.move_to_end((message_id, host))
            while len(self._first) > self._size:
                self._first.popitem(last=False)


class DomainAttempt:
    """One delivery of a message to one domain's exchangers, address by address.

    It holds what the delivery has learnt so far: the outcomes settled, the
    recipients still pending, the failures on the way (told in later
    outcomes' details), and the sessions used, at most ``max_sessions``. It
    records in ``families`` which address family each exchanger was first
    tried with.
    """

    def __init__(
        self,
        email: PreparedEmail,
        domain: str,
        recipients: list[str],
        max_sessions: int,
        families: FamilyMemory,
    ) -> None:
        self.email = email
        self.domain = domain
        #: The recipients no session has settled yet (or only deferred).
        self.pending = list(recipients)
        self._recipients = recipients
        self._max_sessions = max_sessions
        self._families = families
        self._settled: dict[str, Outcome] = {}
        self._failures: list[SessionFailure] = []
        self._sessions = 0
        self._dialled: set[str] = set()
        self._possibly_delivered = False

    def wants_more(self) -> bool:
        """Whether another address is to be tried."""
        return (
            bool(self.pending)
            and self._sessions < self._max_sessions
            and not self._possibly_delivered
        )

    def dialling(self, target: Target) -> None:
        """Note that ``target`` is tried next."""
        if target.host not in self._dialled:
            self._dialled.add(target.host)
            family = _family_of(target.address)
            self._families.record(self.email.message_id, target.host, family)

    def open_failed(self, failure: SessionFailure) -> None:
        """No session could be had; one was used if a connection was made."""
        self._failures.append(failure)
        self._sessions += failure.connected

    def opened(self) -> None:
        """A session was had, a new one or a kept one."""
        self._sessions += 1

    def send_failed(self, failure: SessionFailure) -> None:
        """The session was a kept one found closed, and no new one could be had."""
        self._failures.append(failure)

    def sent(self, outcomes: list[Outcome], note: str) -> None:
        """A transaction settled ``outcomes``; ``note`` says how its session
        came about, if that is worth telling (in plaintext after TLS failed)."""
        if self._failures:
            earlier = "; ".join(f.detail for f in self._failures)
            note = f"{note}; earlier: {earlier}" if note else f"earlier: {earlier}"
        for outcome in outcomes:
            self._settled[outcome.address] = (
                dataclasses.replace(outcome, detail=f"{outcome.detail} ({note})")
                if note
                else outcome
            )
        # The message may be there: no other exchanger this time.
        self._possibly_delivered = any(o.possibly_delivered for o in outcomes)
        self.pending = [
            o.address for o in outcomes if o.result is DeliveryResult.DEFERRED
        ]

    def outcomes(self) -> list[Outcome]:
        """One outcome per recipient: as settled, or deferred for the failures."""
        reached = [self._settled[r] for r in self._recipients if r in self._settled]
        left = [r for r in self._recipients if r not in self._settled]
        if left and not self._failures:
            detail = f"no exchanger of {self.domain} could be tried"
            return reached + deferred(left, NO_ANSWER_FROM_HOST, detail)
        return reached + unreached(left, self._failures)


def targets(
    message_id: str, hosts: list[MxHost], families: FamilyMemory, limit: int
) -> list[Target]:
    """The addresses of ``hosts`` to try for ``message_id``, in order, without
    repeats, at most ``limit``: each exchanger's families alternate, starting
    with the one its previous attempt did not start with."""
    found: list[Target] = []
    seen: set[str] = set()
    for host in hosts:
        previous = families.previous(message_id, host.name)
        for address in _interleave(host, first=4 if previous == 6 else 6):
            if address not in seen:
                seen.add(address)
                found.append(Target(host.name, address))
    return found[:limit]


def _interleave(host: MxHost, *, first: int) -> list[str]:
    """IPv6 and IPv4 addresses alternately, starting with family ``first``."""
    leading, trailing = (host.ipv6, host.ipv4) if first == 6 else (host.ipv4, host.ipv6)
    if not leading:
        leading, trailing = trailing, leading
    order: list[str] = []
    for index in range(max(len(leading), len(trailing))):
        order.extend(leading[index : index + 1])
        order.extend(trailing[index : index + 1])
    return order


def _family_of(address: str) -> int:
    """The address family of an IP address: 6 or 4."""
    return 6 if ":" in address else 4
