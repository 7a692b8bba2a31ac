"""Reading the configuration file (TOML) into :class:`LoadedConfig`.

The file's keys are the names of the fields of :class:`~mailstrom_py.Config`
and its parts, so one documents the other; ``[storage]``, ``[logging]`` and
``[dashboard]`` hold :class:`StorageSettings`, :class:`LoggingSettings` and
:class:`DashboardSettings`. A table stands for a dataclass, and a setting that
takes one of several (``delivery``) names it with ``kind``. Every ``float``
setting in seconds also takes a duration: ``"30s"``, ``"5m"``, ``"2h"``,
``"1d"``, or a sum such as ``"1h30m"``. A secret may be read from a file or an
environment variable (:mod:`.secrets`).

Values are checked twice: their type here, against the field's type hint, and
their meaning by the dataclass they build. Either way the error names the key
path (``delivery.port``), and any key the file should not have is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping, Sequence
from typing import Literal

from ..errors import ConfigError
from . import Config
from .schema import FileField, file_fields, kind_name, options
from .secrets import read_secret, secret_keys
from .settings import (
    DashboardSettings,
    LoadedConfig,
    LoggingSettings,
    StorageSettings,
)

__all__ = ["config_from_mapping", "load_config", "parse_duration"]

#: The sections of a file that are not part of :class:`~mailstrom_py.Config`.
SECTIONS = ("storage", "logging", "dashboard")

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NOT_CONVERTED = object()
_PLURALS: dict[object, str] = {str: "strings", int: "integers", float: "numbers"}

T = typing.TypeVar("T")


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Read the TOML configuration file at ``path``.

    Args:
        path: the file. Relative paths inside it (an SQLite file, a DKIM key, a
            secret's file) are relative to the working directory, not to it.
        environ: where ``*_env`` keys look their variables up; ``os.environ``
            by default.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or a setting is
            missing, unknown or invalid. The message starts with ``path`` and
            names the key: ``"mailstrom.toml: delivery.port: expected an integer
            from 1 to 65535, got "25x""``. No message shows a secret.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            settings = tomllib.load(file)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{source}: cannot read the file: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return config_from_mapping(settings, source=source, environ=environ)


def config_from_mapping(
    settings: Mapping[str, object],
    *,
    source: str = "<mapping>",
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Build the settings from a mapping of the configuration file's shape.

    For settings that are already parsed, such as a dictionary in a web
    framework's settings: tables are mappings, arrays lists or tuples, and a
    key whose value is ``None`` counts as not given.

    Args:
        settings: the top-level table.
        source: what to call the settings in error messages.
        environ: as for :func:`load_config`.

    Raises:
        ConfigError: as for :func:`load_config`, its message starting with
            ``source``.
    """
    reader = _Reader(os.environ if environ is None else environ)
    try:
        return reader.top(settings, source)
    except ConfigError as exc:
        reason, key = _split(exc)
        where = f"{key}: " if key else ""
        raise ConfigError(f"{source}: {where}{reason}") from None


def parse_duration(text: str) -> float | None:
    """Return the seconds in a duration such as ``"90s"``, ``"5m"`` or ``"1h30m"``.

    The units are ``s``, ``m``, ``h`` and ``d``; ``None`` when ``text`` is not
    such a duration.
    """
    compact = "".join(text.split()).lower()
    if not _DURATION.fullmatch(compact):
        return None
    return float(
        sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(compact))
    )


class _Reader:
    """Builds values from tables, with the environment for secrets."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def top(self, settings: Mapping[str, object], source: str) -> LoadedConfig:
        if not isinstance(settings, Mapping):
            raise ConfigError("expected a table of settings")
        return LoadedConfig(
            config=self.build(Config, settings, "", extra=SECTIONS),
            storage=self.build(StorageSettings, settings.get("storage", {}), "storage"),
            logging=self.build(LoggingSettings, settings.get("logging", {}), "logging"),
            source=source,
            dashboard=self.build(
                DashboardSettings, settings.get("dashboard", {}), "dashboard"
            ),
        )

    def build(
        self,
        cls: type[T],
        table: object,
        where: str,
        *,
        extra: tuple[str, ...] = (),
        kind: str | None = None,
    ) -> T:
        """Return ``cls`` built from ``table``, the section at key path ``where``."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"expected a table, got {_shown(table)}", where)
        fields = file_fields(cls)
        _check_keys(table, [*_keys(fields.values()), *extra], where, kind)
        arguments: dict[str, object] = {}
        for item in fields.values():
            path = _join(where, item.name)
            given: object = table.get(item.name)
            if item.secret:
                given = read_secret(table, item.name, where, self.environ)
            elif given is not None:
                given = self.value(given, item, path)
            if given is not None:
                arguments[item.name] = given
            elif item.required:
                raise ConfigError("is required but missing", path)
        try:
            return cls(**arguments)
        except ConfigError as exc:
            reason, key = _split(exc)
            raise ConfigError(reason, _join(where, key)) from None

    def value(self, value: object, item: FileField, path: str) -> object:
        """Return ``value`` as the type of the setting ``item`` (at ``path``)."""
        members = options(item.hint)
        if isinstance(value, Mapping):
            classes = [m for m in members if _is_dataclass(m)]
            if len(classes) == 1:
                return self.build(classes[0], value, path)
            if classes:
                return self.choose(classes, value, path)
        elif isinstance(value, list | tuple):
            kinds = [_item_type(m) for m in members if _item_type(m) is not None]
            if kinds:
                each = dataclasses.replace(item, hint=kinds[0])
                return tuple(
                    self.value(v, each, f"{path}[{i}]") for i, v in enumerate(value)
                )
        else:
            converted = _scalar(value, members, seconds=item.seconds)
            if converted is not _NOT_CONVERTED:
                return converted
        raise ConfigError(_mismatch(value, item, path), path)

    def choose(
        self, classes: list[type], table: Mapping[str, object], path: str
    ) -> object:
        """Build the one of ``classes`` that the table's ``kind`` names."""
        kinds = {kind_name(cls): cls for cls in classes}
        choices = ", ".join(json.dumps(k) for k in kinds)
        kind = table.get("kind")
        if kind is None:
            raise ConfigError(
                f"is required but missing; one of {choices}", f"{path}.kind"
            )
        if kind not in kinds:
            raise ConfigError(
                f"expected one of {choices}, got {_shown(kind)}"
                + _suggestion(str(kind), list(kinds)),
                f"{path}.kind",
            )
        assert isinstance(kind, str)
        rest = {k: v for k, v in table.items() if k != "kind"}
        _check_kind_keys(rest, kind, kinds, path)
        return self.build(kinds[kind], rest, path, kind=kind)


def _check_kind_keys(
    table: Mapping[str, object], kind: str, kinds: dict[str, type], path: str
) -> None:
    # A key of another kind is a likely slip (nameservers for a relay): say so.
    own = _keys_of(kinds[kind])
    for key in table:
        if key in own:
            continue
        for other, cls in kinds.items():
            if key in _keys_of(cls):
                raise ConfigError(
                    f'is a setting of kind "{other}", not of "{kind}"',
                    _join(path, key),
                )


def _keys(fields: typing.Iterable[FileField]) -> list[str]:
    keys: list[str] = []
    for item in fields:
        keys.extend(secret_keys(item.name) if item.secret else (item.name,))
    return keys


def _keys_of(cls: type) -> list[str]:
    return _keys(file_fields(cls).values())


def _check_keys(
    table: Mapping[str, object], allowed: list[str], where: str, kind: str | None
) -> None:
    for key in table:
        if key not in allowed:
            reason = "unknown key" + (f' for kind "{kind}"' if kind else "")
            raise ConfigError(
                reason + _suggestion(str(key), allowed), _join(where, str(key))
            )


def _scalar(value: object, members: tuple[object, ...], *, seconds: bool) -> object:
    if isinstance(value, bool):
        return value if bool in members else _NOT_CONVERTED
    if isinstance(value, int) and int in members:
        return value
    if isinstance(value, int | float) and float in members:
        return float(value)
    if isinstance(value, str):
        return _string(value, members, seconds=seconds)
    return _NOT_CONVERTED


def _string(value: str, members: tuple[object, ...], *, seconds: bool) -> object:
    if str in members or any(value in _choices(m) for m in members):
        return value
    if float in members and seconds:
        duration = parse_duration(value)
        if duration is not None:
            return duration
    return _NOT_CONVERTED


def _choices(hint: object) -> tuple[object, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else ()


def _mismatch(value: object, item: FileField, path: str) -> str:
    members = options(item.hint)
    described = (_described(m, item) for m in members)
    wanted = " or ".join(dict.fromkeys(d for d in described if d))
    got = f"a {type(value).__name__}" if item.secret else _shown(value)
    message = f"expected {wanted}, got {got}"
    choices = [str(a) for m in members for a in _choices(m)]
    if isinstance(value, str) and choices:
        message += _suggestion(value, choices)
    return message


def _described(member: object, item: FileField) -> str | None:
    if member is bool:
        return "true or false"
    if member is int:
        if item.name.endswith("port"):
            return "an integer from 1 to 65535"
        return "an integer"
    if member is float:
        if item.seconds:
            return 'a number of seconds or a duration such as "30s", "5m", "2h", "1d"'
        return "a number"
    if member is str:
        return "a string"
    if typing.get_origin(member) is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in typing.get_args(member))
    if _is_dataclass(member):
        return "a table"
    each = _item_type(member)
    if each is not None:
        plural = "tables" if _is_dataclass(each) else _PLURALS.get(each, "values")
        return "a list of " + plural
    return None  # a type only Python code can give (bytes, a path object)


def _item_type(hint: object) -> object | None:
    if typing.get_origin(hint) in (tuple, list, Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(args) == 1:
            each: object = args[0]
            return each
    return None


def _is_dataclass(hint: object) -> typing.TypeGuard[type]:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _suggestion(key: str, choices: list[str]) -> str:
    by_case = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(key.lower(), list(by_case), n=1)
    return f' (did you mean "{by_case[close[0]]}"?)' if close else ""


def _split(exc: ConfigError) -> tuple[str, str]:
    # The library's ConfigError carries (reason, field); a bare one only a reason.
    if len(exc.args) == 2:
        return str(exc.args[0]), str(exc.args[1])
    return str(exc), ""


def _join(where: str, key: str) -> str:
    if not key:
        return where
    return f"{where}.{key}" if where else key
