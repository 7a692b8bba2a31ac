"""What the commands share: finding the configuration file, opening storage, and
the outbox that stores mail for a worker in another process to deliver.

Every command that reads a configuration file looks for it in the same places
(:func:`config_path`). :func:`open_outbox` turns settings into an outbox, on
the backend :func:`~mailstrom_py.storage.open.open_storage` opens (the one
function that does so, shared with the web framework integrations).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from ..config.settings import LoadedConfig
from ..core import Outbox
from ..errors import ConfigError
from ..storage.open import open_storage

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
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


def require_shared_storage(loaded: LoadedConfig) -> None:
    """Refuse settings that keep the queue in memory, where no other process
    can see it: the queue of ``send``, ``worker`` and ``queue`` is a file or a
    database.

    Raises:
        ConfigError: ``loaded`` has no ``[storage]`` location.
    """
    if loaded.storage.kind == "memory":
        raise ConfigError(
            f"{loaded.source}: storage: the queue would be kept in the memory of"
            " one process, out of reach of every other; give"
            ' [storage] sqlite = "/path/to/outbox.db" or postgres = "dsn"'
        )


@contextlib.contextmanager
def open_outbox(loaded: LoadedConfig) -> Iterator[Outbox]:
    """Open the storage of ``loaded`` and yield an :class:`~mailstrom_py.Outbox`
    that stores mail in it, for a worker elsewhere to deliver; close both on
    leaving.

    The outbox prepares (and DKIM-signs) a message as ``send_email()`` always
    does and stores it. It starts no thread, builds no transport and delivers
    nothing: a worker looking at the same storage finds the message.

    Raises:
        ConfigError: the storage or the outbox cannot be set up from ``loaded``
            (a DKIM key that cannot be read, say).
        StorageError: the storage cannot be opened.
    """
    storage = open_storage(loaded.storage)
    try:
        outbox = Outbox(loaded.config, storage)
    except BaseException:
        storage.close()
        raise
    with outbox:
        yield outbox
