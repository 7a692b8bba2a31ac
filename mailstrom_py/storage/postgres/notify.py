"""Wake-ups across processes: PostgreSQL's LISTEN and NOTIFY.

Whatever makes mail due now (adding it, kicking it, releasing it) sends a
notification on the storage's channel (:func:`channel_for`) in the same
transaction, so it is delivered when, and only if, the change is committed. A
:class:`Listener` waits for them on a connection of its own, for a worker that
would otherwise poll.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from .db import Connection
from .deadline import cut_off

__all__ = ["Listener", "channel_for", "notify_sql"]

log = logging.getLogger(__name__)


def channel_for(schema: str) -> str:
    """The channel notified when mail in ``schema`` (a plain lower-case
    identifier) becomes due."""
    return f"{schema}_due"


def notify_sql(channel: str) -> str:
    """An SQL expression that notifies ``channel`` (a plain identifier) when the
    statement's transaction commits; notifications of one transaction fold into
    one."""
    return f"pg_notify('{channel}', '')"


class Listener:
    """Listens on ``channel`` on a connection of its own.

    :meth:`wait` returns when a notification arrives. It connects on first use
    and again after the connection is lost; a server that cannot be reached
    makes it wait out its timeout and return ``False``, never raise, so a
    worker that waits on it keeps polling storage at its usual pace.
    Notifications sent while the listener was not connected are lost: after
    (re)connecting, :meth:`wait` returns ``True`` at once, so that its caller
    looks at storage.

    Args:
        dsn: the connection string.
        options: psycopg ``connect()`` arguments (timeouts, keepalives).
        channel: the channel, a plain identifier.
    """

    def __init__(self, dsn: str, options: dict[str, Any], channel: str) -> None:
        self._dsn = dsn
        self._channel = channel
        self._options = {**options, "autocommit": True}
        self._lock = threading.Lock()  # one waiter at a time
        self._conn: Connection | None = None
        self._closed = threading.Event()
        self._failing = False

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification.

        Returns:
            ``True`` when a notification came (all those queued are consumed),
            or when the listener has just (re)connected and may have missed
            some; ``False`` when the time ran out, or the listener is closed.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            if self._closed.is_set():
                return False
            conn = self._conn
            if conn is None or conn.closed:
                return self._connect(deadline)
            try:
                # One notification, then those already queued behind it (a
                # generator holds the connection's lock until it is finished).
                came = any(conn.notifies(timeout=max(timeout, 0.0), stop_after=1))
                if came:
                    for _ in conn.notifies(timeout=0):
                        pass
                return came
            except psycopg.Error as exc:
                self._drop(conn)
                if self._closed.is_set():
                    return False
                log.warning("lost the connection listening for new mail: %s", exc)
                return True

    def close(self) -> None:
        """Stop listening; a :meth:`wait` under way returns ``False``. Idempotent."""
        self._closed.set()
        conn = self._conn
        if conn is not None and not conn.closed:
            cut_off(conn.fileno())  # wakes a waiter blocked on it
        with self._lock:
            if self._conn is not None:
                self._drop(self._conn)

    def _connect(self, deadline: float) -> bool:
        try:
            conn = psycopg.connect(self._dsn, **self._options)
        except psycopg.Error as exc:
            if not self._failing:
                log.warning("cannot listen for new mail: %s", exc)
            self._failing = True
            self._closed.wait(max(deadline - time.monotonic(), 0.0))
            return False
        try:
            conn.execute(f"LISTEN {self._channel}".encode())
        except psycopg.Error as exc:
            conn.close()
            log.warning("cannot listen for new mail: %s", exc)
            self._closed.wait(max(deadline - time.monotonic(), 0.0))
            return False
        if self._failing:
            log.warning("listening for new mail again")
        self._failing = False
        self._conn = conn
        return True

    def _drop(self, conn: Connection) -> None:
        self._conn = None
        try:
            conn.close()
        except psycopg.Error:  # pragma: no cover - closing a dead connection
            pass
