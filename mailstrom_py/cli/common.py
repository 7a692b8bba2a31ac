"""What the commands share: finding the configuration file, opening storage, and
the producer that stores mail for a worker in another process to deliver.

Every command that reads a configuration file looks for it in the same places
(:func:`config_path`). :func:`open_storage` and :func:`open_outbox` are the one
place that turns settings into a backend and a producer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from ..config.settings import LoadedConfig, StorageSettings
from ..core import Mailstrom
from ..errors import ConfigError
from ..storage import MemoryStorage, SqliteStorage, Storage

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "Producer",
    "config_path",
    "open_outbox",
    "open_storage",
    "require_shared_storage",
]

#: The environment variable that names the configuration file.
CONFIG_ENV = "MAILSTROM_CONFIG"
#: The configuration file used when neither an option nor the variable names one.
DEFAULT_CONFIG = "/etc/mailstrom/mailstrom.toml"


def config_path(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Return the configuration file to read: ``given`` (from ``--config``),
    else ``$MAILSTROM_CONFIG``, else :data:`DEFAULT_CONFIG`."""
    if given:
        return given
    env = os.environ if environ is None else environ
    return env.get(CONFIG_ENV) or DEFAULT_CONFIG


def open_storage(settings: StorageSettings, *, create: bool = True) -> Storage:
    """Open the storage that ``settings`` describe.

    Args:
        settings: the ``[storage]`` section of a configuration file.
        create: create a missing SQLite file; with ``False`` a missing file
            raises ``StorageError`` (for commands that only look at a queue).

    Raises:
        ConfigError: the settings ask for PostgreSQL, which this version of the
            command line cannot open yet.
        StorageError: the SQLite file cannot be opened or created.
    """
    if settings.sqlite is not None:
        return SqliteStorage(
            settings.sqlite,
            synchronous=settings.synchronous,
            attempt_synchronous=settings.attempt_synchronous,
            busy_timeout=settings.busy_timeout,
            create=create,
        )
    if settings.postgres is not None:
        raise ConfigError(
            "storage.postgres: PostgreSQL storage is not available yet in this"
            ' version; use sqlite = "/path/to/outbox.db"'
        )
    return MemoryStorage()


def require_shared_storage(loaded: LoadedConfig) -> None:
    """Refuse settings that keep the queue in memory, where no other process
    can see it: the queue of ``send``, ``worker`` and ``queue`` is a file.

    Raises:
        ConfigError: ``loaded`` has no ``[storage]`` location.
    """
    if loaded.storage.kind == "memory":
        raise ConfigError(
            f"{loaded.source}: storage: the queue would be kept in the memory of"
            " one process, out of reach of every other; give"
            ' [storage] sqlite = "/path/to/outbox.db"'
        )


class Producer(Protocol):
    """What ``send`` needs of a mailer: prepare and store, nothing more."""

    def send_email(
        self,
        message: bytes,
        *,
        mail_from: str | None = None,
        rcpt_to: Sequence[str] | None = None,
    ) -> str:
        """Prepare and store ``message``; return its id (see ``Mailstrom``)."""
        ...


@contextlib.contextmanager
def open_outbox(loaded: LoadedConfig) -> Iterator[Producer]:
    """Open the storage of ``loaded`` and yield a producer that stores mail in it,
    for a worker elsewhere to deliver; close both on leaving.

    The producer prepares (and DKIM-signs) a message as ``send_email()``
    always does and stores it. It starts no thread and delivers nothing: it is
    a :class:`~mailstrom_py.Mailstrom` that is never started, whose notice of
    new mail wakes no delivery thread: a worker elsewhere finds it in storage.

    Raises:
        ConfigError: the storage or the mailer cannot be set up from ``loaded``.
        StorageError: the storage cannot be opened.
    """
    storage = open_storage(loaded.storage)
    try:
        mailer = Mailstrom(loaded.config, storage)
    except BaseException:
        storage.close()
        raise
    try:
        yield mailer
    finally:
        mailer.stop()
