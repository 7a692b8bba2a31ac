"""When a mailer reports back to senders: :class:`DsnPolicy` (RFC 3464).

A frozen value checked when it is built; :mod:`mailstrom_py.config` re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from .checks import check_count

__all__ = ["DsnPolicy"]


@dataclass(frozen=True)
class DsnPolicy:
    """When a mailer reports back to senders (RFC 3464 delivery status notifications).

    A report goes to the message's envelope sender from the null reverse-path,
    through the mailer's own queue. A message whose sender is null (a report
    itself) never gets one, so reports cannot loop.

    Attributes:
        on_failure: report recipients that end ``FAILED``; the recipients of one
            message that fail in the same attempt share one report.
        delay_after: report a recipient still ``DEFERRED`` after an attempt made
            this many seconds after the message was stored (as Postfix's
            ``delay_warning_time``); ``None`` never does.
        delay_after_attempts: report a recipient still ``DEFERRED`` after this many
            attempts (mox reports after its fifth); ``None`` never does.

    A "delayed" report goes at most once per recipient: with the attempt that
    first crosses one of the two thresholds.

    Raises:
        ConfigError: a threshold is out of range.
    """

    on_failure: bool = True
    delay_after: float | None = None
    delay_after_attempts: int | None = None

    def __post_init__(self) -> None:
        after = self.delay_after
        if after is not None and not (
            isinstance(after, int | float) and math.isfinite(after) and after >= 0
        ):
            raise ConfigError(
                f"must be a finite number of seconds >= 0, not {after!r}",
                "delay_after",
            )
        if self.delay_after_attempts is not None:
            check_count(self.delay_after_attempts, "delay_after_attempts", minimum=1)
