"""When a bounce puts an address on the suppression list: :class:`SuppressionPolicy`.

A frozen value checked when it is built; :mod:`mailstrom_py.config` re-exports it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["MAILBOX_GONE", "SuppressionPolicy"]

#: The enhanced status codes (RFC 3463, RFC 7505) that say a mailbox will not
#: take mail, whatever is sent: X.1.0 other address status, X.1.1 bad
#: destination mailbox, X.1.6 mailbox moved without forwarding address, X.1.10
#: null MX (the domain takes no mail; Microsoft also answers unknown users so),
#: and X.2.1 mailbox disabled. Left out: X.1.2 (bad destination system, a
#: statement about the domain that a relay's DNS trouble can also cause), X.1.3
#: (bad syntax, refused before it is queued), and every X.7 (policy, often about
#: the sender: its authentication, its reputation).
MAILBOX_GONE: tuple[str, ...] = ("5.1.0", "5.1.1", "5.1.6", "5.1.10", "5.2.1")

_CODE = re.compile(r"5\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class SuppressionPolicy:
    """Which failures put a recipient on the suppression list, and for how long.

    A recipient that fails permanently with one of ``codes``, in the reply to
    its RCPT (or from the library's own lookup, for a null MX), is suppressed
    for ``duration`` seconds: a later message to it fails that recipient at
    once (``5.7.1``), without a connection. A delivery to the address, or
    ``unsuppress()``, removes the entry.

    Attributes:
        enabled: keep and honour the list; with ``False`` nothing is added
            automatically and nothing is checked.
        duration: seconds an address stays suppressed; 30 days, as Postal.
        codes: the permanent enhanced status codes that suppress; by default
            :data:`MAILBOX_GONE`.

    Raises:
        ConfigError: ``duration`` is not a positive number of seconds, or a
            code is not a permanent enhanced status code.
    """

    enabled: bool = True
    duration: float = 30 * 86400.0
    codes: tuple[str, ...] = MAILBOX_GONE

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError("must be true or false", "enabled")
        value = self.duration
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(
                f"must be a finite number of seconds > 0, not {value!r}", "duration"
            )
        for code in self.codes:
            if not isinstance(code, str) or not _CODE.fullmatch(code):
                raise ConfigError(
                    f"must be permanent enhanced status codes such as 5.1.1,"
                    f" not {code!r}",
                    "codes",
                )
        object.__setattr__(self, "codes", tuple(self.codes))
