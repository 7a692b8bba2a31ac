"""Opening the storage a configuration's ``[storage]`` section describes.

The one place that turns :class:`~mailstrom_py.config.settings.StorageSettings`
into a backend, for every way of running the mailer from settings: the
command line and the web framework integrations alike.
"""

from __future__ import annotations

from ..config.settings import StorageSettings
from ..errors import ConfigError
from .base import Storage
from .memory import MemoryStorage
from .sqlite import SqliteStorage

__all__ = ["open_storage"]


def open_storage(settings: StorageSettings, *, create: bool = True) -> Storage:
    """Open the storage that ``settings`` describe.

    Args:
        settings: the ``[storage]`` section of a configuration file.
        create: create a missing SQLite file; with ``False`` a missing file
            raises ``StorageError`` (for commands that only look at a queue).

    Raises:
        ConfigError: the settings ask for PostgreSQL, which this version
            cannot open yet.
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
