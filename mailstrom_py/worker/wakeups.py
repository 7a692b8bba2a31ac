"""Wake-ups from storage itself: mail stored by another process, told at once.

A storage shared by processes may say when mail becomes due anywhere (a
:class:`~mailstrom_py.PostgresStorage` listens for PostgreSQL's NOTIFY); a
worker on such a storage need not wait for its next look to find it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["WakeSource", "Wakeups"]

log = logging.getLogger(__name__)


@runtime_checkable
class WakeSource(Protocol):
    """A storage that can wait for mail to become due."""

    def wait_for_work(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True when there may be new work."""
        ...


class Wakeups:
    """A thread that waits on ``source`` and calls ``wake`` each time it says
    there may be work, until stopped.

    Polling stays the worker's fallback: a wake-up only makes a look come
    sooner. ``interval`` bounds each wait, so a stop is noticed within it (at
    once when the storage is closed, which ends its wait).
    """

    def __init__(
        self, source: WakeSource, wake: Callable[[], None], interval: float
    ) -> None:
        self._source = source
        self._wake = wake
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="mailstrom-wakeups", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop waking the worker; the thread ends within ``interval``."""
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                woken = self._source.wait_for_work(self._interval)
            except Exception:
                log.exception("waiting for new mail failed; polling meanwhile")
                self._stopped.wait(self._interval)
                continue
            if woken and not self._stopped.is_set():
                self._wake()
