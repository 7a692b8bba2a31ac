"""The delivery controls an :class:`~mailstrom_py.Outbox` offers: the
suppression list, and suspending and resuming destinations.

They work on the controls kept in storage, so an Outbox in one process (or
``mailstrom-py suppression`` and ``destination`` on the command line) changes
what the workers of every process sharing the storage do.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config
from ..storage.controls import Controls, Suppression, Suspension, fold_destination

__all__ = ["ControlCommands", "controls_of"]


def controls_of(storage: object, fallback: Callable[[], Controls]) -> Controls:
    """Return ``storage`` as the :class:`Controls` it keeps, or, for a storage
    that keeps none, ``fallback()`` (controls of this process only)."""
    return storage if isinstance(storage, Controls) else fallback()


class ControlCommands:
    """Suppress and suspend; mixed into :class:`~mailstrom_py.Outbox`, which
    sets the three attributes. Times are read on its clock."""

    _config: Config
    _controls: Controls
    _clock: Callable[[], float]

    def suppress(
        self,
        address: str,
        *,
        reason: str = "a command",
        duration: float | None = None,
    ) -> Suppression:
        """Put ``address`` on the suppression list: mail to it fails at once
        (``5.7.1``) until the entry ends or is removed.

        Args:
            address: the recipient; case does not matter.
            reason: why, shown in the status of the recipients it fails.
            duration: seconds it lasts; ``Config.suppression.duration`` (30
                days) by default.

        Returns:
            The entry stored (it replaces one the address had).

        Raises:
            ConfigError: the address is not ``local@domain``, the reason holds
                a line break, or the duration is not positive.
        """
        seconds = self._config.suppression.duration if duration is None else duration
        entry = Suppression.lasting(address, reason, self._clock(), seconds)
        self._controls.suppress([entry])
        return entry

    def unsuppress(self, address: str) -> bool:
        """Take ``address`` off the suppression list; whether it was on it."""
        return bool(self._controls.unsuppress([address]))

    def suppressions(self) -> list[Suppression]:
        """Return the suppression list as it stands, oldest entry first."""
        return self._controls.suppressions(self._clock())

    def suspend(
        self, destination: str, duration: float, *, reason: str = "a command"
    ) -> Suspension:
        """Suspend deliveries to ``destination`` for ``duration`` seconds.

        Its mail waits, deferred without its attempts counted, until the
        suspension ends or :meth:`resume` ends it; an attempt under way
        finishes. A worker elsewhere sees it within a second.

        Args:
            destination: ``"relay"``; a preset's name (``"gmail"``); a
                destination's set of mail exchangers as the worker names it;
                or a recipient domain.
            duration: seconds it lasts.
            reason: why, shown in the status of the recipients it defers.

        Raises:
            ConfigError: the name is empty or holds white space, or the
                duration is not positive.
        """
        entry = Suspension.lasting(destination, reason, self._clock(), duration)
        self._controls.suspend(entry)
        return entry

    def resume(self, destination: str) -> bool:
        """End the suspension of ``destination``; whether it had one. Its
        waiting mail goes out at the time the suspension would have ended, or
        at once when kicked."""
        return self._controls.resume(fold_destination(destination))

    def suspensions(self) -> list[Suspension]:
        """Return the destinations suspended now."""
        return self._controls.suspensions(self._clock())
