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
            PostgreSQL's tables are created on first use either way.

    Raises:
        ConfigError: the settings ask for PostgreSQL and psycopg is not
            installed.
        StorageError: the SQLite file cannot be opened or created, or the
            PostgreSQL database cannot be reached.
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
        return _open_postgres(settings, settings.postgres)
    return MemoryStorage()


def _open_postgres(settings: StorageSettings, dsn: str) -> Storage:
    try:
        # psycopg is optional: only a queue in PostgreSQL needs it.
        from .postgres import PostgresStorage  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            f"storage.postgres: PostgreSQL storage needs psycopg 3 and psycopg_pool"
            f" ({exc}); install them with: pip install 'mailstrom_py[postgres]'"
        ) from None
    return PostgresStorage(
        dsn,
        password=settings.password,
        max_connections=settings.max_connections,
        connect_timeout=settings.connect_timeout,
        statement_timeout=settings.statement_timeout,
        migration_timeout=settings.migration_timeout,
        retention=settings.retention,
    )
