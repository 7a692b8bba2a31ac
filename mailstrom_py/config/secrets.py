"""Secrets in a configuration file: inline, from a file, or from the environment.

A secret setting ``password`` may be written as ``password = "..."``, as
``password_file = "/run/secrets/relay"`` (the file's text, less one final line
break, as container secrets and ``echo`` leave one) or as
``password_env = "MAILSTROM_RELAY_PASSWORD"`` (the variable's value); at most one
of the three. No error message quotes a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import ConfigError

__all__ = ["HIDDEN", "SOURCES", "hide_dsn", "read_secret", "secret_keys"]

#: What is shown in place of a secret.
HIDDEN = "********"

#: The suffixes of the keys a secret may be read from, besides its own name.
SOURCES = ("_file", "_env")

_URI = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#]*@)?", re.I)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.I)
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.I)


def secret_keys(name: str) -> tuple[str, ...]:
    """Return the keys that may give the secret ``name``: itself, then its sources."""
    return (name, *(name + suffix for suffix in SOURCES))


def read_secret(
    table: Mapping[str, object], name: str, where: str, environ: Mapping[str, str]
) -> str | None:
    """Return the secret ``name`` from ``table``, or ``None`` when it is not given.

    Args:
        table: the settings of one section; a key whose value is ``None`` is
            not given.
        name: the secret's key (``"password"``).
        where: the key path of ``table`` (``"delivery"``), for error messages.
        environ: the environment variables to look ``name_env`` up in.

    Raises:
        ConfigError: (reason, key path) more than one of ``name``, ``name_file``
            and ``name_env`` is given; one is not a string; the file cannot be read
            or is empty; the variable is not set or empty.
    """
    given = [key for key in secret_keys(name) if table.get(key) is not None]
    if not given:
        return None
    key = given[0]
    path = f"{where}.{key}" if where else key
    if len(given) > 1:
        raise ConfigError("give one of " + ", ".join(given) + ", not several", path)
    value = table[key]
    if not isinstance(value, str):
        raise ConfigError("expected a string", path)
    if key == name:
        return value
    if key.endswith("_file"):
        return _read_file(value, path)
    secret = environ.get(value)
    if secret is None:
        raise ConfigError(f'the environment variable "{value}" is not set', path)
    if not secret:
        raise ConfigError(f'the environment variable "{value}" is empty', path)
    return secret


def _read_file(file: str, path: str) -> str:
    try:
        with open(file, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f'cannot read "{file}": {reason}', path) from None
    except UnicodeDecodeError:
        raise ConfigError(f'"{file}" is not UTF-8 text', path) from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(f'"{file}" is empty', path)
    return text


def hide_dsn(dsn: str) -> str:
    """Return a database connection string with its password, if any, hidden.

    Both forms are covered: ``postgresql://user:secret@host/db`` and
    ``host=db user=app password=secret``.
    """
    uri = _URI.match(dsn)
    if uri is None:
        return _KEYWORD_PASSWORD.sub(lambda m: m[1] + HIDDEN, dsn)
    userinfo = uri["userinfo"] or ""
    if ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":" + HIDDEN + "@"
    rest = _QUERY_PASSWORD.sub(lambda m: m[1] + HIDDEN, dsn[uri.end() :])
    return uri["scheme"] + userinfo + rest
