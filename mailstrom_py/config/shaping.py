"""Traffic shaping per destination: :class:`ShapingConfig`, its
:class:`DestinationLimits` and its :class:`ReplyRule` s.

Frozen values checked when they are built; :mod:`mailstrom_py.config`
re-exports them. The presets for the large mailbox providers are data, in
:mod:`.presets`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError
from .checks import check_count
from .presets import PRESET_DATA, RULE_DATA

__all__ = ["PRESETS", "RULES", "DestinationLimits", "ReplyRule", "ShapingConfig"]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _check_seconds(value: object, name: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"must be a finite number of seconds > 0, not {value!r}", name
        )


def _check_optional_count(value: object, name: str) -> None:
    if value is not None:
        check_count(value, name, minimum=1)


@dataclass(frozen=True)
class DestinationLimits:
    """The limits of one destination, or of every destination (the default).

    A destination is where mail goes: the relay, or one set of mail exchangers
    (every domain a provider hosts shares its exchangers, so they share one
    set of limits, as KumoMTA's "sites" do). A named destination is
    recognised by the names of its exchangers: every exchanger's name ends
    with one of ``mx_suffixes``.

    Attributes:
        name: the destination's name, lower case: ``"gmail"``; ``""`` for the
            default limits.
        mx_suffixes: the endings of its exchangers' names (``".google.com"``).
        rate: at most this many messages every ``per`` seconds; ``None`` for
            no limit. Spread evenly (GCRA): 10 per second is one every 0.1 s.
        per: the period of ``rate``, in seconds.
        burst: how many messages may go at once after a quiet spell, above
            the even spread; 1 for none.
        connections: at most this many connections at once; ``None`` takes
            the default limits' (or ``Config.destination_concurrency``).
        messages_per_connection: at most this many messages over one
            connection; ``None`` takes the default limits' (or
            ``Config.session_max_messages``).

    Raises:
        ConfigError: a value is out of range.
    """

    name: str = ""
    mx_suffixes: tuple[str, ...] = ()
    rate: int | None = None
    per: float = 1.0
    burst: int = 1
    connections: int | None = None
    messages_per_connection: int | None = None

    def __post_init__(self) -> None:
        if self.name and not _NAME.fullmatch(self.name):
            raise ConfigError(
                "must be lower-case letters, digits, '.', '_' or '-',"
                f" not {self.name!r}",
                "name",
            )
        for suffix in self.mx_suffixes:
            if not isinstance(suffix, str) or not suffix.strip(".") or " " in suffix:
                raise ConfigError(
                    f"must be name endings, not {suffix!r}", "mx_suffixes"
                )
        object.__setattr__(
            self, "mx_suffixes", tuple(s.lower() for s in self.mx_suffixes)
        )
        _check_optional_count(self.rate, "rate")
        _check_seconds(self.per, "per")
        check_count(self.burst, "burst", minimum=1)
        _check_optional_count(self.connections, "connections")
        _check_optional_count(self.messages_per_connection, "messages_per_connection")


@dataclass(frozen=True)
class ReplyRule:
    """What a reply that matches ``pattern`` does to its destination.

    Attributes:
        pattern: a regular expression searched (case-insensitively) in the
            reply as ``"421 4.7.28 text"``: its code, enhanced code and text.
        action: ``"suspend"`` stops every delivery to the destination for
            ``duration``; ``"slow"`` lowers its rate to ``rate`` messages
            every ``per`` seconds, over one connection, for ``duration``.
        duration: how long, in seconds.
        rate: for ``"slow"``, the messages allowed every ``per`` seconds.
        per: for ``"slow"``, the period of ``rate``.

    Raises:
        ConfigError: the pattern is not a regular expression, or a value is
            out of range.
    """

    pattern: str
    action: Literal["suspend", "slow"] = "suspend"
    duration: float = 3600.0
    rate: int = 1
    per: float = 60.0

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"not a regular expression: {exc}", "pattern") from None
        if self.action not in ("suspend", "slow"):
            raise ConfigError(
                f'must be "suspend" or "slow", not {self.action!r}', "action"
            )
        _check_seconds(self.duration, "duration")
        check_count(self.rate, "rate", minimum=1)
        _check_seconds(self.per, "per")


#: The shipped named destinations (:data:`~.presets.PRESET_DATA`).
PRESETS: tuple[DestinationLimits, ...] = tuple(
    DestinationLimits(**d)  # type: ignore[arg-type]
    for d in PRESET_DATA
)
#: The shipped reply rules (:data:`~.presets.RULE_DATA`).
RULES: tuple[ReplyRule, ...] = tuple(
    ReplyRule(**d)  # type: ignore[arg-type]
    for d in RULE_DATA
)


@dataclass(frozen=True)
class ShapingConfig:
    """Traffic shaping per destination.

    Attributes:
        default: the limits of every destination, where its own say nothing.
        destinations: named destinations with limits of their own; one named
            as a preset replaces that preset.
        presets: also use the shipped presets (:data:`PRESETS`: Gmail,
            Outlook, Yahoo, Apple) for destinations not given.
        rules: replies that suspend or slow their destination; the shipped
            :data:`RULES` (Gmail ``421 4.7.28``, Microsoft ``451
            4.7.650``, Yahoo ``TS04``...) by default.
        max_wait: the longest a delivery waits for its turn under a rate;
            a message whose turn is further off is deferred until then,
            without an attempt counted.

    Raises:
        ConfigError: a value is out of range, or two destinations share a name.
    """

    default: DestinationLimits = field(default_factory=DestinationLimits)
    destinations: tuple[DestinationLimits, ...] = ()
    presets: bool = True
    rules: tuple[ReplyRule, ...] = RULES
    max_wait: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.default, DestinationLimits):
            raise ConfigError("must be a DestinationLimits", "default")
        names: set[str] = set()
        for limits in self.destinations:
            if not isinstance(limits, DestinationLimits) or not limits.name:
                raise ConfigError("must be named DestinationLimits", "destinations")
            if limits.name in names:
                raise ConfigError(f"names {limits.name!r} twice", "destinations")
            names.add(limits.name)
        object.__setattr__(self, "destinations", tuple(self.destinations))
        if any(not isinstance(r, ReplyRule) for r in self.rules):
            raise ConfigError("must be ReplyRules", "rules")
        object.__setattr__(self, "rules", tuple(self.rules))
        if (
            isinstance(self.max_wait, bool)
            or not isinstance(self.max_wait, int | float)
            or not 0 <= self.max_wait < math.inf
        ):
            raise ConfigError(
                f"must be a finite number of seconds >= 0, not {self.max_wait!r}",
                "max_wait",
            )

    @property
    def named(self) -> tuple[DestinationLimits, ...]:
        """The named destinations in force: those given, then the presets not
        replaced by one of them (when ``presets`` is on)."""
        given = {d.name for d in self.destinations}
        shipped = (
            tuple(p for p in PRESETS if p.name not in given) if self.presets else ()
        )
        return self.destinations + shipped
