"""The mailer's settings, read from Django's.

``MAILSTROM_CONFIG``
    the path of a TOML configuration file, as ``mailstrom-py`` reads it; or
``MAILSTROM``
    a dict of the same shape (``{"helo_name": ..., "delivery": {...},
    "storage": {"sqlite": ...}}``), read by
    :func:`~mailstrom_py.config_from_mapping`.
``MAILSTROM_WORKER_IN_PROCESS``
    ``True`` to deliver from each process that sends, with a
    :class:`~mailstrom_py.Mailstrom` of its own started at the first message;
    ``False`` (the default) only queues, for a worker elsewhere.

Give one of the first two. Without a worker in the process the queue must be a
file (``[storage] sqlite``), where a worker in another process finds it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.conf import settings

from ...config.loader import config_from_mapping, load_config
from ...config.settings import LoadedConfig
from ...errors import ConfigError

__all__ = ["CONFIG_FILE", "CONFIG_MAPPING", "IN_PROCESS", "load", "worker_in_process"]

#: The setting that names a TOML configuration file.
CONFIG_FILE = "MAILSTROM_CONFIG"
#: The setting that holds the configuration as a dict.
CONFIG_MAPPING = "MAILSTROM"
#: The setting that asks for a worker in every process that sends.
IN_PROCESS = "MAILSTROM_WORKER_IN_PROCESS"


def load() -> LoadedConfig:
    """Return the mailer's settings from Django's (see the module).

    Raises:
        ConfigError: neither or both of the settings are given, the file
            cannot be read, or a value is invalid; the message names the
            setting or the file, and the key.
    """
    path: object = getattr(settings, CONFIG_FILE, None)
    mapping: object = getattr(settings, CONFIG_MAPPING, None)
    if (path is None) == (mapping is None):
        raise ConfigError(
            f"give settings.{CONFIG_FILE} (the path of a TOML file) or"
            f" settings.{CONFIG_MAPPING} (a dict of the same shape), one of them"
        )
    if mapping is not None:
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"settings.{CONFIG_MAPPING} must be a dict")
        return config_from_mapping(mapping, source=f"settings.{CONFIG_MAPPING}")
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"settings.{CONFIG_FILE} must be the path of a file")
    return load_config(path)


def worker_in_process() -> bool:
    """Whether each process delivers what it sends (``MAILSTROM_WORKER_IN_PROCESS``)."""
    return bool(getattr(settings, IN_PROCESS, False))
