"""Which settings of a configuration value a file can give, read off its fields.

The configuration file mirrors the dataclasses: a key is a field's name and its
type hint says what the key takes. A field whose type a file cannot hold (a ready
``ssl.SSLContext``, a resolver object) is left to Python. So a field added to
:class:`~mailstrom_py.Config` or one of its parts becomes a key with nothing to
change here; the few facts a type hint cannot tell are the tables below.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "NOT_SECONDS",
    "SCALARS",
    "FileField",
    "file_fields",
    "kind_name",
    "options",
]

#: The types a file value can take directly (TOML's scalars, as Python reads them).
SCALARS: tuple[type, ...] = (bool, int, float, str)

#: ``float`` settings that are not a number of seconds; every other ``float``
#: setting also takes a duration such as ``"5m"``.
NOT_SECONDS: frozenset[str] = frozenset(
    {"RetryPolicy.multiplier", "RetryPolicy.jitter"}
)


@dataclass(frozen=True)
class FileField:
    """One key a configuration file may give for a dataclass.

    Attributes:
        name: the key, which is the field's name.
        hint: the field's type, resolved.
        required: the field has no default, so the key must be given.
        secret: a string never shown: besides ``name`` it may be read from a file
            (``name_file``) or an environment variable (``name_env``). A field is
            secret when it is a string left out of ``repr()``, or says so in its
            metadata (``{"secret": True}``).
        seconds: a number of seconds, which may also be written ``"5m"``; or
            a list of them.
        partly_secret: a secret that is shown with only the password it may hold
            hidden (a connection string); its metadata says
            ``{"secret": "password within"}``.
    """

    name: str
    hint: object
    required: bool
    secret: bool
    seconds: bool
    partly_secret: bool = False


def options(hint: object) -> tuple[object, ...]:
    """Return the members of a union type (the type itself if it is none), less None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(a for a in typing.get_args(hint) if a is not type(None))
    return (hint,)


def kind_name(cls: type) -> str:
    """Return the ``kind`` naming ``cls`` among the choices of a setting.

    ``RelayConfig`` is ``"relay"`` and ``DirectConfig`` is ``"direct"``.
    """
    return cls.__name__.removesuffix("Config").lower()


def file_fields(cls: type) -> dict[str, FileField]:
    """Return the keys a file may give for the dataclass ``cls``, in field order.

    Fields that are not arguments of the constructor, and fields of a type no
    file value can stand for, are left out.
    """
    return {item.name: item for item in _fields_of(cls)}


@functools.cache
def _fields_of(cls: type) -> tuple[FileField, ...]:
    found: list[FileField] = []
    for item in dataclasses.fields(cls):
        if not item.init:
            continue
        hint = _resolve(cls, item)
        if hint is None or not any(_loadable(o) for o in options(hint)):
            continue
        members = options(hint)
        found.append(
            FileField(
                name=item.name,
                hint=hint,
                required=item.default is dataclasses.MISSING
                and item.default_factory is dataclasses.MISSING,
                secret=bool(item.metadata.get("secret"))
                or (not item.repr and members == (str,)),
                seconds=any(float in (m, _each(m)) for m in members)
                and f"{cls.__name__}.{item.name}" not in NOT_SECONDS,
                partly_secret=item.metadata.get("secret") == "password within",
            )
        )
    return tuple(found)


def _each(hint: object) -> object:
    """The type of each item of a list type; None for any other type."""
    if typing.get_origin(hint) in (tuple, list, Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return args[0] if len(args) == 1 else None
    return None


def _resolve(cls: type, item: dataclasses.Field[object]) -> object | None:
    # One field at a time: a hint naming a module imported only for type
    # checking (dns.resolver) cannot be resolved, and marks a Python-only field.
    holder = type(
        "_Hint",
        (),
        {"__annotations__": {item.name: item.type}, "__module__": cls.__module__},
    )
    try:
        hint: object = typing.get_type_hints(holder)[item.name]
    except NameError:
        return None
    return hint


def _loadable(hint: object) -> bool:
    if hint in SCALARS or typing.get_origin(hint) is Literal:
        return True
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return True
    origin = typing.get_origin(hint)
    if origin in (tuple, list, Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return len(args) == 1 and _loadable(args[0])
    return False
