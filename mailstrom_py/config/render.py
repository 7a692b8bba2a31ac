"""Showing loaded settings as a configuration file, secrets hidden.

:func:`render` writes every setting a file can give, defaults included, in the
file's own format, so the output documents what a file means and loads back to
the same settings (with ``"********"`` for each secret).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

from .schema import FileField, file_fields, kind_name, options
from .secrets import HIDDEN, hide_dsn
from .settings import LoadedConfig

__all__ = ["render"]

_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def render(loaded: LoadedConfig) -> str:
    """Return the effective settings of ``loaded`` as TOML, secrets hidden."""
    lines = [f"# The effective settings of {loaded.source}; secrets are hidden."]
    lines.extend(_section(loaded.config, ""))
    lines.extend(_section(loaded.storage, "storage"))
    lines.extend(_section(loaded.logging, "logging"))
    lines.extend(_section(loaded.dashboard, "dashboard"))
    return "\n".join(lines) + "\n"


def _section(
    value: object, header: str, *, array: bool = False, kind: bool = False
) -> Iterator[str]:
    if header:
        yield ""
        yield f"[[{header}]]" if array else f"[{header}]"
    if kind:
        yield f"kind = {_string(kind_name(type(value)))}"
    later: list[tuple[FileField, object]] = []
    for item in file_fields(type(value)).values():
        current = getattr(value, item.name)
        if _is_table(current) or (_is_tables(current) and current):
            later.append((item, current))
        else:
            yield _line(item, current)
    for item, current in later:
        path = f"{header}.{item.name}" if header else item.name
        # A setting that takes one of several dataclasses (delivery) names it.
        kinds = sum(_is_dataclass_type(m) for m in options(item.hint)) > 1
        if isinstance(current, tuple):
            for each in current:
                yield from _section(each, path, array=True, kind=kinds)
        else:
            yield from _section(current, path, kind=kinds)


def _line(item: FileField, value: object) -> str:
    if value is None:
        return f"# {item.name}: not set"
    if item.partly_secret and isinstance(value, str):
        return f"{item.name} = {_string(hide_dsn(value))}"
    if item.secret:
        return f"{item.name} = {_string(HIDDEN)}"
    if isinstance(value, bytes):
        return f"# {item.name}: given as bytes, not shown"
    text = f"{item.name} = {_value(value)}"
    if item.seconds and isinstance(value, int | float):
        text += _in_units(value)
    return text


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | os.PathLike):
        return _string(os.fspath(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return _string(str(value))


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _in_units(seconds: float) -> str:
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"  # {int(seconds // size)}{unit}"
    return ""


def _is_table(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _is_tables(value: object) -> bool:
    return isinstance(value, tuple) and all(_is_table(v) for v in value)


def _is_dataclass_type(hint: object) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)
