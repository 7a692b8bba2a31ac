"""Wake-ups across processes: PostgreSQL's LISTEN and NOTIFY.

Whatever makes mail due now sends a notification on the storage's channel
(:func:`channel_for`), only once the change is committed. Kicking and releasing
mail notify in their own transaction. Adding mail, which is frequent, leaves
it to a :class:`Notifier`, which notifies just after the add commits, once for
all the adds committed meanwhile: PostgreSQL lets one notifying transaction
commit at a time, so adds that each notified would queue behind each other's
disk writes. A :class:`Listener` waits for notifications on a connection of
its own, for a worker that would otherwise poll.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from ...errors import StorageError
from .db import Connection, Database
from .deadline import cut_off

__all__ = ["Listener", "Notifier", "channel_for", "notify_sql"]

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


class Notifier:
    """Notifies ``channel`` from a thread of its own, after the writes that
    call for it have committed: once for every :meth:`notify` made while the
    previous notification was being sent.

    The thread starts with the first :meth:`notify`; it sends on a connection
    of ``db``'s pool, in a transaction that does not wait for the disk (a
    notification has nothing to keep). A notification that cannot be sent is
    logged and dropped: workers then find the mail when they next look on
    their own.
    """

    def __init__(self, db: Database, channel: str) -> None:
        self._db = db
        self._sql = (
            "SELECT set_config('synchronous_commit', 'off', true),"
            f" {notify_sql(channel)}"
        ).encode()
        self._cond = threading.Condition(threading.Lock())
        self._due = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """Have the channel notified soon; returns at once. Thread-safe."""
        with self._cond:
            if self._closed:
                return
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mailstrom-pg-notifier", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """Send the notification still due, if any, and stop the thread.
        Idempotent."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(self._db.timeouts.connect + self._db.timeouts.call)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due and not self._closed:
                    self._cond.wait()
                if not self._due:
                    return
                self._due = False
            try:
                self._db.write_statement(
                    "notify workers of new mail", self._send, again=True
                )
            except StorageError as exc:
                log.info("workers were not notified of new mail: %s", exc)

    def _send(self, conn: Connection) -> None:
        conn.execute(self._sql)


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
