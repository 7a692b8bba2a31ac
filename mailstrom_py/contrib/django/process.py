"""The one outbox of a process, opened from Django's settings on first use.

Django builds a new email backend for every ``send_mail()``, so the outbox
(and its database connection, and the worker when one is asked for) cannot
live in the backend: each process opens one, at its first message, and keeps
it until it exits. A process forked from one that had opened it (a server
that loads the application before forking) opens its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from ...core import Mailstrom, Outbox
from ...errors import ConfigError
from ...storage.open import open_storage
from . import conf

__all__ = ["ProcessOutbox", "close_outbox", "get_outbox"]

log = logging.getLogger(__name__)


class ProcessOutbox:
    """Holds the outbox of the current process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outbox: Outbox | None = None
        self._pid: int | None = None
        self._at_exit = False

    def get(self) -> Outbox:
        """Return the process's outbox, opening it first if need be.

        It is an :class:`~mailstrom_py.Outbox` on the configured storage, or,
        with ``MAILSTROM_WORKER_IN_PROCESS = True``, a started
        :class:`~mailstrom_py.Mailstrom`.

        Raises:
            ConfigError: the settings are missing or invalid, or they keep
                the queue in memory with no worker in the process.
            StorageError: the storage cannot be opened.
            WorkerError: the worker did not start.
        """
        with self._lock:
            if self._outbox is None or self._pid != os.getpid():
                # A forked child leaves its parent's outbox alone: the
                # connection and the worker's threads are the parent's.
                self._outbox = _open()
                self._pid = os.getpid()
                if not self._at_exit:
                    atexit.register(self.close)
                    self._at_exit = True
            return self._outbox

    def close(self) -> None:
        """Close the process's outbox, if it has one (a Mailstrom stops, giving
        due mail up to ``drain_timeout`` seconds); the next :meth:`get`
        opens it again."""
        with self._lock:
            outbox, self._outbox = self._outbox, None
            mine = self._pid == os.getpid()
        if outbox is not None and mine:
            outbox.close()


def _open() -> Outbox:
    loaded = conf.load()
    in_process = conf.worker_in_process()
    if loaded.storage.kind == "memory" and not in_process:
        raise ConfigError(
            f"{loaded.source}: storage: the queue would be kept in the memory of"
            " this process, where no worker finds it; give"
            ' [storage] sqlite = "/path/to/outbox.db", or set'
            f" {conf.IN_PROCESS} = True"
        )
    storage = open_storage(loaded.storage)
    try:
        if not in_process:
            return Outbox(loaded.config, storage)
        mailer = Mailstrom(loaded.config, storage)
    except BaseException:
        storage.close()
        raise
    try:
        mailer.start()
    except BaseException:
        mailer.stop(drain=0)
        raise
    log.info("delivering from this process (%s)", conf.IN_PROCESS)
    return mailer


_PROCESS = ProcessOutbox()


def get_outbox() -> Outbox:
    """Return the outbox the email backend queues mail in, in this process.

    Opened from the settings at the first call; use it to ask what became of
    a message (``query_status()``, ``wait()``), or call it as the process
    starts to have its worker (``MAILSTROM_WORKER_IN_PROCESS``) start then.

    Raises:
        ConfigError: the settings are missing or invalid.
        StorageError: the storage cannot be opened.
    """
    return _PROCESS.get()


def close_outbox() -> None:
    """Close this process's outbox (when the settings change, in tests); the
    next message opens it again."""
    _PROCESS.close()
