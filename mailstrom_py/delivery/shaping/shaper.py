"""Traffic shaping per destination: which destination a delivery goes to, and
whether, when and over how many connections it may go there.

A destination is the relay, or the set of mail exchangers of a recipient
domain: domains that share exchangers share limits. One named in the
configuration (or a preset) is recognised by its exchangers' names; any
other is named by its exchangers, sorted and joined with commas
(``"mx1.example.net,mx2.example.net"``).

A transport asks the :class:`Shaper`, before each delivery to a destination,
whether it is suspended (:meth:`Shaper.held`) and for its turn under the
destination's rate (:meth:`Shaper.turn`); either may answer with a
:class:`Hold`, and the recipients are then deferred without an attempt
counted (:func:`held_outcomes`). It delivers within :meth:`Shaper.connection`,
which bounds the connections at once, and tells the shaper the outcomes
(:meth:`Shaper.observe`), whose replies may suspend or slow the destination.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from ...codes import DESTINATION_HELD
from ...config import Config
from ...config.shaping import DestinationLimits, ReplyRule, ShapingConfig
from ...status import DeliveryResult, SmtpReply
from ..base import Outcome
from ..routing.limits import ConcurrencyLimit
from .rate import Gcra

__all__ = [
    "RELAY",
    "Destination",
    "Hold",
    "OnSuspend",
    "Shaper",
    "held_outcomes",
    "reply_text",
    "shaper_for",
]

log = logging.getLogger(__name__)

#: The name of the relay as a destination.
RELAY = "relay"

#: Told ``(destination, reason, since, until)`` when a reply suspends a
#: destination, to keep the suspension where other workers see it.
OnSuspend = Callable[[str, str, float, float], None]


@dataclass(frozen=True)
class Destination:
    """Where a delivery goes, and the limits it goes under.

    Attributes:
        name: the destination's name (see the module doc).
        limits: its limits, with every unset value filled in from the
            defaults: ``connections`` and ``messages_per_connection`` are set.
        domain: the recipient domain the delivery is for (direct delivery).
    """

    name: str
    limits: DestinationLimits
    domain: str | None = None


@dataclass(frozen=True)
class Hold:
    """A delivery not made now: deferred, not counted, until ``until``.

    Attributes:
        until: when it may be tried again (seconds since the epoch).
        detail: why, in words.
    """

    until: float
    detail: str


@dataclass
class _Slowed:
    until: float
    rate: Gcra


def reply_text(reply: SmtpReply) -> str:
    """A reply as rules see it: ``"421 4.7.28 text"``."""
    return " ".join(p for p in (str(reply.code), reply.enhanced, reply.text) if p)


def held_outcomes(recipients: Sequence[str], hold: Hold) -> list[Outcome]:
    """Deferred outcomes for ``recipients`` held back by ``hold``: with
    :data:`~mailstrom_py.codes.DESTINATION_HELD`, and ``held_until`` set so
    that the attempt is not counted."""
    return [
        Outcome(
            a,
            DeliveryResult.DEFERRED,
            DESTINATION_HELD,
            hold.detail,
            held_until=hold.until,
        )
        for a in recipients
    ]


class Shaper:
    """Applies a :class:`~mailstrom_py.ShapingConfig`. Thread-safe.

    Args:
        config: the limits, presets and reply rules.
        connections: the connections at once where no limits say
            (``Config.destination_concurrency``).
        messages_per_connection: the messages per connection where no limits
            say (``Config.session_max_messages``).
        clock: wall-clock seconds, for suspensions.
        monotonic: monotonic seconds, for rates.
        sleep: waits for a turn.
        rng: spreads the retries of messages held for their rate.
    """

    def __init__(
        self,
        config: ShapingConfig,
        *,
        connections: int = 20,
        messages_per_connection: int = 100,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        fallback = DestinationLimits(
            connections=connections, messages_per_connection=messages_per_connection
        )
        self._default = _filled(config.default, fallback)
        self._named = tuple(_filled(d, self._default) for d in config.named)
        self._rules = tuple((re.compile(r.pattern, re.I), r) for r in config.rules)
        self._max_wait = config.max_wait
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._rates: dict[str, Gcra] = {}
        self._slowed: dict[str, _Slowed] = {}
        self._suspended: dict[str, tuple[float, str]] = {}
        self._connections = ConcurrencyLimit(connections)
        #: Told of each suspension a reply makes; set by the worker.
        self.on_suspend: OnSuspend | None = None

    # -- naming -------------------------------------------------------------------

    def relay(self) -> Destination:
        """The relay as a destination, under the default limits."""
        return Destination(RELAY, self._named_limits(RELAY) or self._default)

    def for_exchangers(self, hosts: Sequence[str], domain: str) -> Destination:
        """The destination of ``domain``, whose mail exchangers are ``hosts``."""
        names = sorted({h.lower().rstrip(".") for h in hosts}) or [domain.lower()]
        for limits in self._named:
            if limits.mx_suffixes and all(
                n.endswith(limits.mx_suffixes) for n in names
            ):
                return Destination(limits.name, limits, domain)
        return Destination(",".join(names), self._default, domain)

    def _named_limits(self, name: str) -> DestinationLimits | None:
        return next((d for d in self._named if d.name == name), None)

    # -- suspensions ----------------------------------------------------------------

    def update_suspensions(self, entries: Iterable[tuple[str, str, float]]) -> None:
        """Replace the suspensions with ``entries``, each ``(destination,
        reason, until)``: those kept where every worker sees them."""
        with self._lock:
            self._suspended = {name: (until, reason) for name, reason, until in entries}

    def add_suspension(self, name: str, reason: str, until: float) -> None:
        """Suspend ``name`` until ``until`` in this shaper (a suspension kept
        elsewhere already)."""
        with self._lock:
            self._suspended[name] = (until, reason)

    def suspend(self, name: str, reason: str, duration: float) -> None:
        """Suspend ``name`` for ``duration`` seconds, and tell ``on_suspend``."""
        since = self._clock()
        until = since + duration
        with self._lock:
            self._suspended[name] = (until, reason)
        log.warning("destination %s suspended for %gs: %s", name, duration, reason)
        if self.on_suspend is not None:
            self.on_suspend(name, reason, since, until)

    def resume(self, name: str) -> None:
        """End the suspension and slowing of ``name`` in this shaper."""
        with self._lock:
            self._suspended.pop(name, None)
            self._slowed.pop(name, None)

    def held(self, destination: Destination) -> Hold | None:
        """The hold on ``destination`` while it (or its recipient domain) is
        suspended; None when it is not."""
        now = self._clock()
        with self._lock:
            for name in filter(None, (destination.name, destination.domain)):
                until, reason = self._suspended.get(name, (0.0, ""))
                if until > now:
                    return Hold(until, f"destination {name} suspended: {reason}")
        return None

    # -- rates and connections -------------------------------------------------------

    def turn(self, destination: Destination) -> Hold | None:
        """Wait for ``destination``'s next turn under its rate, if it comes
        within ``max_wait``; otherwise take no turn and return the hold until
        about when it comes."""
        rate = self._rate(destination)
        if rate is None:
            return None
        now = self._monotonic()
        wait = rate.reserve(now, self._max_wait)
        if wait is None:
            later = rate.free_at(now) + self._rng.uniform(0, rate.interval)
            return Hold(
                self._clock() + later,
                f"destination {destination.name} is over its rate; next turn"
                f" in {later:.1f}s",
            )
        if wait > 0:
            self._sleep(wait)
        return None

    def _rate(self, destination: Destination) -> Gcra | None:
        name = destination.name
        with self._lock:
            slowed = self._slowed.get(name)
            if slowed is not None:
                if slowed.until > self._clock():
                    return slowed.rate
                del self._slowed[name]
            limits = destination.limits
            if limits.rate is None:
                return None
            rate = self._rates.get(name)
            if rate is None:
                rate = self._rates[name] = Gcra(limits.rate, limits.per, limits.burst)
            return rate

    def paced(self, destination: Destination) -> bool:
        """Whether ``destination`` is under a rate now (its own, or a slowing),
        so that each message waits for a turn of its own."""
        return self._rate(destination) is not None

    @contextlib.contextmanager
    def connection(self, destination: Destination) -> Iterator[None]:
        """Hold one of ``destination``'s connections for the body of the
        ``with``; one while it is slowed."""
        with self._lock:
            slowed = destination.name in self._slowed
        limit = 1 if slowed else destination.limits.connections
        with self._connections.slot(destination.name, limit):
            yield

    def messages_per_connection(self, destination: Destination) -> int:
        """How many messages one connection to ``destination`` may carry."""
        most = destination.limits.messages_per_connection
        assert most is not None  # filled in
        return most

    # -- replies ----------------------------------------------------------------------

    def observe(self, destination: Destination, outcomes: Sequence[Outcome]) -> None:
        """Apply the reply rules to the replies among ``outcomes``: the first
        rule a reply matches suspends or slows ``destination``."""
        if not self._rules:
            return
        seen: set[str] = set()
        for outcome in outcomes:
            for reply in (outcome.reply, outcome.rcpt_reply):
                if reply is None or reply.code < 400:
                    continue
                text = reply_text(reply)
                if text in seen:
                    continue
                seen.add(text)
                rule = self._rule_for(text)
                if rule is not None:
                    self._act(destination, rule, text)
                    return

    def _rule_for(self, text: str) -> ReplyRule | None:
        return next((r for pattern, r in self._rules if pattern.search(text)), None)

    def _act(self, destination: Destination, rule: ReplyRule, text: str) -> None:
        if rule.action == "suspend":
            self.suspend(destination.name, f"after {text}", rule.duration)
            return
        until = self._clock() + rule.duration
        with self._lock:
            self._slowed[destination.name] = _Slowed(
                until, Gcra(rule.rate, rule.per, 1)
            )
        log.warning(
            "destination %s slowed to %d per %gs for %gs after %s",
            destination.name,
            rule.rate,
            rule.per,
            rule.duration,
            text,
        )


def shaper_for(config: Config, *, clock: Callable[[], float] = time.time) -> Shaper:
    """The shaper of ``config``: its ``shaping``, with
    ``destination_concurrency`` and ``session_max_messages`` as the defaults;
    ``clock`` (wall-clock seconds) times its suspensions."""
    return Shaper(
        config.shaping,
        connections=config.destination_concurrency,
        messages_per_connection=config.session_max_messages,
        clock=clock,
    )


def _filled(
    limits: DestinationLimits, defaults: DestinationLimits
) -> DestinationLimits:
    """``limits`` with its unset connection limits taken from ``defaults``."""
    return replace(
        limits,
        connections=limits.connections or defaults.connections,
        messages_per_connection=(
            limits.messages_per_connection or defaults.messages_per_connection
        ),
        rate=limits.rate if limits.rate is not None else defaults.rate,
        per=limits.per if limits.rate is not None else defaults.per,
        burst=limits.burst if limits.rate is not None else defaults.burst,
    )
