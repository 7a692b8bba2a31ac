"""Delivery controls kept in storage: the suppression list and the suspended
destinations.

Both are shared by every process that opens the storage, so a command line in
one process suppresses an address or suspends a destination for the workers of
all the others. An entry lasts until its ``until`` time (seconds since the
epoch, on the caller's clock, like every time a caller passes storage) or until
it is removed. :class:`MemoryControls` keeps them in a process; the SQL backends
keep them in tables of their own.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "Controls",
    "MemoryControls",
    "Suppression",
    "Suspension",
    "fold_address",
    "fold_destination",
]


def fold_address(address: str) -> str:
    """Return the form of ``address`` the suppression list is keyed by: the
    whole address in lower case (receiving systems treat local parts
    case-insensitively in practice, and a list that told ``Bob@`` from
    ``bob@`` would let a hard bounce through)."""
    return address.strip().lower()


def fold_destination(name: str) -> str:
    """Return the form of a destination's name suspensions are keyed by: without
    surrounding white space, in lower case (``"Gmail "`` is ``"gmail"``)."""
    return name.strip().lower()


def _duration(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"must be a number of seconds > 0, not {value!r}", "duration")
    return float(value)


def _check_span(since: float, until: float) -> None:
    for name, value in (("since", since), ("until", until)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"must be a number of seconds, not {value!r}", name)
        if not math.isfinite(value):
            raise ConfigError(f"must be finite, not {value!r}", name)
    if until <= since:
        raise ConfigError("must be later than since", "until")


def _check_text(value: object, name: str) -> None:
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise ConfigError("must be a string without CR, LF or NUL", name)


@dataclass(frozen=True)
class Suppression:
    """An address no mail is sent to until ``until``.

    Attributes:
        address: the recipient, as :func:`fold_address` folds it.
        reason: why, in words: the reply that bounced (``"550 5.1.1 no such
            user"``) or what the operator said.
        since: when it was suppressed.
        until: when the suppression ends by itself.

    Raises:
        ConfigError: the address is not ``local@domain`` (folded), the reason
            holds a line break, or ``until`` is not after ``since``.
    """

    address: str
    reason: str
    since: float
    until: float

    def __post_init__(self) -> None:
        local, at, domain = self.address.rpartition("@")
        if (
            not at
            or not local
            or not domain
            or self.address != fold_address(self.address)
            or any(ord(c) < 32 for c in self.address)
        ):
            raise ConfigError(
                f"must be a folded address local@domain, not {self.address!r}",
                "address",
            )
        _check_text(self.reason, "reason")
        _check_span(self.since, self.until)

    @classmethod
    def lasting(
        cls, address: str, reason: str, now: float, duration: float
    ) -> Suppression:
        """The entry for ``address`` (folded) from ``now`` for ``duration``
        seconds: how the command line, the dashboard and the Outbox make one.

        Raises:
            ConfigError: as the class says, or the duration is not a finite
                number of seconds above 0.
        """
        return cls(fold_address(address), reason, now, now + _duration(duration))


@dataclass(frozen=True)
class Suspension:
    """A destination no delivery is tried toward until ``until``.

    Attributes:
        destination: the destination's name (see
            :class:`~mailstrom_py.delivery.shaping.Shaper`): ``"relay"``, a
            preset's name such as ``"gmail"``, a set of mail exchangers, or a
            recipient domain.
        reason: why, in words: the reply that triggered it, or what the
            operator said.
        since: when it was suspended.
        until: when the suspension ends by itself.

    Raises:
        ConfigError: the destination is empty or holds white space, the reason
            a line break, or ``until`` is not after ``since``.
    """

    destination: str
    reason: str
    since: float
    until: float

    def __post_init__(self) -> None:
        if (
            not isinstance(self.destination, str)
            or not self.destination
            or any(c.isspace() or ord(c) < 32 for c in self.destination)
            or self.destination != self.destination.lower()
        ):
            raise ConfigError(
                "must be a lower-case name without white space,"
                f" not {self.destination!r}",
                "destination",
            )
        _check_text(self.reason, "reason")
        _check_span(self.since, self.until)

    @classmethod
    def lasting(
        cls, destination: str, reason: str, now: float, duration: float
    ) -> Suspension:
        """The entry for ``destination`` (folded, see :func:`fold_destination`)
        from ``now`` for ``duration`` seconds: how the command line, the
        dashboard and the Outbox make one.

        Raises:
            ConfigError: as the class says, or the duration is not a finite
                number of seconds above 0.
        """
        return cls(
            fold_destination(destination), reason, now, now + _duration(duration)
        )


class Controls(ABC):
    """The suppression list and the suspended destinations of a storage.

    Contract for every backend, besides :class:`~mailstrom_py.Storage`'s (thread
    and process safety, frozen values, ``StorageError`` for a failure of the
    backend):

    * An entry is in force at ``now`` while ``now < until``; reads leave out
      entries no longer in force, and a backend may delete them at any write.
    * Adding an entry for an address (or destination) that has one replaces
      it, whatever the times.
    * Each method is one atomic step.
    """

    @abstractmethod
    def suppress(self, entries: Sequence[Suppression]) -> None:
        """Add ``entries`` to the suppression list, replacing entries of the
        same addresses."""

    @abstractmethod
    def unsuppress(self, addresses: Sequence[str]) -> list[str]:
        """Remove the entries of ``addresses`` (folded as :func:`fold_address`
        does), in force or not.

        Returns:
            The folded addresses whose entries were removed, in the order given.
        """

    @abstractmethod
    def suppressed(
        self, addresses: Sequence[str], now: float
    ) -> dict[str, Suppression]:
        """Return the entries in force at ``now`` for ``addresses``, keyed by
        each address as given (matched as :func:`fold_address` folds it);
        addresses not suppressed are left out."""

    @abstractmethod
    def suppressions(self, now: float) -> list[Suppression]:
        """Return every entry in force at ``now``, oldest ``since`` first (ties
        by address)."""

    @abstractmethod
    def suspend(self, entry: Suspension) -> None:
        """Suspend ``entry.destination``, replacing an entry it has."""

    @abstractmethod
    def resume(self, destination: str) -> bool:
        """Remove the suspension of ``destination``; whether there was one."""

    @abstractmethod
    def suspensions(self, now: float) -> list[Suspension]:
        """Return every suspension in force at ``now``, by destination."""


class MemoryControls(Controls):
    """:class:`Controls` kept in dictionaries, for the life of the process.

    Thread-safe. :class:`~mailstrom_py.MemoryStorage` is one; a worker whose
    storage keeps no controls uses one of its own.
    """

    def __init__(self) -> None:
        self._controls_lock = threading.Lock()
        self._suppressed: dict[str, Suppression] = {}
        self._suspended: dict[str, Suspension] = {}

    def suppress(self, entries: Sequence[Suppression]) -> None:
        with self._controls_lock:
            for entry in entries:
                self._suppressed[entry.address] = entry

    def unsuppress(self, addresses: Sequence[str]) -> list[str]:
        with self._controls_lock:
            removed = []
            for address in dict.fromkeys(fold_address(a) for a in addresses):
                if self._suppressed.pop(address, None) is not None:
                    removed.append(address)
            return removed

    def suppressed(
        self, addresses: Sequence[str], now: float
    ) -> dict[str, Suppression]:
        with self._controls_lock:
            found: dict[str, Suppression] = {}
            if not self._suppressed:
                return found  # the common case: nothing to fold addresses for
            for address in addresses:
                entry = self._suppressed.get(fold_address(address))
                if entry is not None and now < entry.until:
                    found[address] = entry
            return found

    def suppressions(self, now: float) -> list[Suppression]:
        with self._controls_lock:
            live = [e for e in self._suppressed.values() if now < e.until]
        return sorted(live, key=lambda e: (e.since, e.address))

    def suspend(self, entry: Suspension) -> None:
        with self._controls_lock:
            self._suspended[entry.destination] = entry

    def resume(self, destination: str) -> bool:
        with self._controls_lock:
            return self._suspended.pop(destination, None) is not None

    def suspensions(self, now: float) -> list[Suspension]:
        with self._controls_lock:
            live = [e for e in self._suspended.values() if now < e.until]
        return sorted(live, key=lambda e: e.destination)
