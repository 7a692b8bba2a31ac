"""Suspended destinations kept in storage, for the shaper of every worker.

A reply that suspends a destination (:meth:`Shaper.observe`) is written to
storage, and every worker reads the suspensions there at most every
``refresh`` seconds, so a suspension made by a command in another process,
or by another worker, holds this worker's mail too, and a resumed
destination gets mail again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..delivery.shaping import Shaper
from ..errors import ConfigError, StorageError
from ..storage.controls import Controls, Suspension

__all__ = ["SuspensionSync"]

log = logging.getLogger("mailstrom_py.worker")


class SuspensionSync:
    """Keeps ``shaper``'s suspensions and those in ``controls`` alike.
    Thread-safe.

    Args:
        shaper: the transport's shaper; its ``on_suspend`` is set to write
            each suspension to ``controls``.
        controls: where suspensions are kept.
        refresh: the most seconds between two reads of ``controls``.
        monotonic: monotonic seconds, for ``refresh``.
    """

    def __init__(
        self,
        shaper: Shaper,
        controls: Controls,
        *,
        refresh: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shaper = shaper
        self._controls = controls
        self._refresh = refresh
        self._monotonic = monotonic
        self._last = -float("inf")
        self._lock = threading.Lock()
        shaper.on_suspend = self._keep

    def refresh(self, now: float, *, force: bool = False) -> None:
        """Read the suspensions in force at ``now`` into the shaper, unless
        they were read less than ``refresh`` seconds ago (``force`` reads
        them anyway). A storage failure leaves the shaper as it was."""
        with self._lock:
            at = self._monotonic()
            if not force and at - self._last < self._refresh:
                return
            self._last = at
        try:
            entries = self._controls.suspensions(now)
        except StorageError:
            log.warning("could not read the suspended destinations", exc_info=True)
            return
        self._shaper.update_suspensions(
            (e.destination, e.reason, e.until) for e in entries
        )

    def _keep(self, destination: str, reason: str, since: float, until: float) -> None:
        """Write a suspension a reply made (the one place it is recorded,
        where a "suspended" event about a destination belongs)."""
        try:
            self._controls.suspend(Suspension(destination, reason, since, until))
        except (StorageError, ConfigError):
            log.warning(
                "could not keep the suspension of %s", destination, exc_info=True
            )
