"""The retention of :class:`~mailstrom_py.storage.postgres.PostgresStorage`:
completed mail removed in short batches, on request or along with claims."""

from __future__ import annotations

import logging
import math
import time

from ...errors import StorageError
from ..base import check_age
from . import admin
from .handle import PostgresHandle

__all__ = ["PostgresRetention"]

# How often a worker's claims remove expired mail, and how much at once.
_PURGE_EVERY = 60.0
_PURGE_BATCH = 500

log = logging.getLogger(__name__)


class PostgresRetention(PostgresHandle):
    """Removal of completed messages: :meth:`purge_completed`, and one batch at
    most once a minute along with claims when the storage has a retention."""

    _retention: float | None
    _next_purge: float

    def purge_completed(
        self,
        older_than: float | None = None,
        *,
        now: float | None = None,
        batch: int = 500,
    ) -> int:
        """Remove messages completed more than ``older_than`` seconds ago.

        The removal goes in batches of ``batch`` messages, each its own short
        transaction that skips messages another session has locked, so it
        never holds many locks for long, nor waits for a worker.

        Args:
            older_than: the age, in seconds since completion; by default the
                ``retention`` the storage was made with.
            now: the time to count from when the storage keeps its callers'
                clock; with the database's clock it is not used.
            batch: the most messages one transaction removes.

        Returns:
            How many messages were removed.

        Raises:
            ValueError: no age is given and the storage has no retention, or
                the age or ``batch`` is out of range.
            StorageError: a batch failed; the batches before it stay removed.
        """
        age = self._retention if older_than is None else older_than
        if age is None:
            raise ValueError("give older_than: this storage keeps completed mail")
        check_age(age, batch)
        at = self._now(time.time() if now is None else now)
        removed = 0
        while True:
            gone = self._purge(age, at, batch)
            removed += gone
            if gone < batch:
                return removed

    def _purge(self, age: float, at: float | None, batch: int) -> int:
        """Remove one batch of messages completed more than ``age`` seconds
        before ``at``; return how many."""
        return len(
            self._db.write_statement(
                "remove completed messages",
                lambda conn: admin.purge(conn, age, at, batch),
            )
        )

    def _keep_retention(self, now: float) -> None:
        """Remove one batch of expired mail, if the retention asks for it and a
        minute has passed since the last batch (a batch that found more left
        asks for the next at once)."""
        if self._retention is None or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + _PURGE_EVERY
        try:
            gone = self._purge(self._retention, self._now(now), _PURGE_BATCH)
        except StorageError as exc:
            log.warning("removing completed mail failed; later again: %s", exc)
            return
        if gone == _PURGE_BATCH:
            self._next_purge = -math.inf
