"""How long to wait before the next attempt, and what a server's reply means.

:class:`RetryPolicy` is a frozen value: it never sleeps and holds no state. The
reply classification follows RFC 5321 §4.2.1 and RFC 3463: the class of the reply
code decides (2 success, 4 transient, 5 permanent), and an enhanced status code
that contradicts it is overruled, as Postfix does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .codes import (
    OTHER_PROTOCOL_PERMANENT,
    UNDEFINED_PERMANENT,
    UNDEFINED_SUCCESS,
    UNDEFINED_TRANSIENT,
)
from .errors import ConfigError
from .status import DeliveryResult, SmtpReply

__all__ = ["RetryPolicy", "classify_reply", "status_code_for"]

# The code of each reply class when the server's own code is missing or disagrees.
_UNDEFINED = {2: UNDEFINED_SUCCESS, 4: UNDEFINED_TRANSIENT, 5: UNDEFINED_PERMANENT}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, a cap, and limits on attempts and age;
    or an explicit schedule of delays.

    After attempt ``n`` (1-based) failed transiently, the next one is due after
    ``min(initial_delay * multiplier ** (n - 1), max_delay)`` seconds, scaled by a
    random factor in ``[1 - jitter, 1 + jitter]``. With a ``schedule`` (such as
    2m, 5m, 10m, 30m, 1h, 2h, 1d, 3d, as Stalwart retries), the delay after
    attempt ``n`` is its ``n``-th entry instead, the last one repeating, with
    the same jitter; ``initial_delay``, ``multiplier`` and ``max_delay`` are
    then not used but for the first entry being the worker's default lease,
    as ``initial_delay`` is otherwise. A message stops being retried
    once it has had ``max_attempts`` attempts (when set) or ``max_age`` seconds
    have passed since it was first due (its scheduled time, or else when it
    was stored); its still-deferred recipients then fail.

    The defaults follow Postfix: first retry after 5 minutes, doubling, at most
    4000 seconds apart, given up after 5 days. RFC 5321 §4.5.4.1 suggests at least
    30 minutes between retries; like Postfix, mox and Exim we retry sooner at first.

    Raises:
        ConfigError: a value is out of range.
    """

    initial_delay: float = 300.0
    multiplier: float = 2.0
    max_delay: float = 4000.0
    jitter: float = 0.1
    max_attempts: int | None = None
    max_age: float = 5 * 24 * 3600.0
    schedule: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", _checked_schedule(self.schedule))
        for name in ("initial_delay", "max_delay", "max_age"):
            value = getattr(self, name)
            if not (
                isinstance(value, int | float) and math.isfinite(value) and value >= 0
            ):
                raise ConfigError(f"must be a finite number >= 0, not {value!r}", name)
        if not (isinstance(self.multiplier, int | float) and self.multiplier >= 1):
            raise ConfigError(f"must be >= 1, not {self.multiplier!r}", "multiplier")
        if not (isinstance(self.jitter, int | float) and 0 <= self.jitter < 1):
            raise ConfigError(f"must be in [0, 1), not {self.jitter!r}", "jitter")
        if self.max_delay < self.initial_delay:
            raise ConfigError("must not be less than initial_delay", "max_delay")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigError(
                f"must be >= 1, not {self.max_attempts!r}", "max_attempts"
            )

    @property
    def first_delay(self) -> float:
        """The delay before the first retry, without jitter."""
        return self.schedule[0] if self.schedule else self.initial_delay

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Return the seconds to wait after ``attempts`` (>= 1) attempts."""
        if self.schedule:
            base = self.schedule[min(max(attempts, 1), len(self.schedule)) - 1]
            return base * (1 + rng.uniform(-self.jitter, self.jitter))
        exponent = max(attempts - 1, 0)
        try:
            base = min(self.initial_delay * self.multiplier**exponent, self.max_delay)
        except OverflowError:
            base = self.max_delay
        return base * (1 + rng.uniform(-self.jitter, self.jitter))

    def next_attempt_at(
        self, attempts: int, since: float, now: float, rng: random.Random
    ) -> float | None:
        """Return when to try again after ``attempts`` attempts, or ``None`` to give up.

        ``since`` is when ``max_age`` starts counting: when the message was
        first due (:attr:`~mailstrom_py.status.MessageStatus.retry_since`).
        The answer never lies past ``since + max_age``: a message whose next
        delay would outlive it gets one last attempt at that moment.
        """
        expires_at = since + self.max_age
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return None
        if now >= expires_at:
            return None
        return min(now + self.delay(attempts, rng), expires_at)


def _checked_schedule(schedule: object) -> tuple[float, ...]:
    """``schedule`` as a tuple of delays, each a finite number of seconds > 0.

    Raises:
        ConfigError: it is not a sequence of such numbers.
    """
    if not isinstance(schedule, tuple | list):
        raise ConfigError(f"must be a list of delays, not {schedule!r}", "schedule")
    for value in schedule:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(
                f"must hold finite numbers of seconds > 0, not {value!r}", "schedule"
            )
    return tuple(float(v) for v in schedule)


def classify_reply(reply: SmtpReply) -> DeliveryResult:
    """Map a reply to the result it means for the recipients it concerns.

    2xx is ``DELIVERED``, 4xx ``DEFERRED``, 5xx ``FAILED``; anything else (a 1xx
    or 3xx where none belongs, a code outside 100-599) is treated as a permanent
    protocol error, the way Postfix treats it (5.5.0).
    """
    if 200 <= reply.code < 300:
        return DeliveryResult.DELIVERED
    if 400 <= reply.code < 500:
        return DeliveryResult.DEFERRED
    return DeliveryResult.FAILED


def status_code_for(reply: SmtpReply) -> str:
    """Return the RFC 3463 status code to record for ``reply``.

    The server's enhanced code is kept when its class agrees with the reply code;
    otherwise the class of the reply code wins (``550 4.1.1`` is recorded as
    ``5.0.0``), and a reply outside 2xx/4xx/5xx becomes ``5.5.0``.
    """
    undefined = _UNDEFINED.get(reply.code // 100)
    if undefined is None:
        return OTHER_PROTOCOL_PERMANENT
    if reply.enhanced is not None and reply.enhanced[0] == undefined[0]:
        return reply.enhanced
    return undefined
