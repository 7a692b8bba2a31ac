"""The MTA-STS policy: strict parsing (RFC 8461 §3.2) and MX matching (§4.1).

A policy is a few ``key: value`` lines served over HTTPS::

    version: STSv1
    mode: enforce
    mx: mail.example.net
    mx: *.example.net
    max_age: 604800

Any error makes the whole policy invalid, which a sender treats as no policy
(RFC 8461 §3.2, §5). Keys are case-sensitive; unknown keys are ignored; a
repeated key counts once, its first time, except ``mx``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

__all__ = [
    "MAX_AGE_LIMIT",
    "PolicyError",
    "StsMode",
    "StsPolicy",
    "mx_matches",
    "parse_policy",
]

#: The largest ``max_age`` a policy may give, one year (RFC 8461 §3.2).
MAX_AGE_LIMIT = 31557600

_FIELD = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*(.*?)[ \t]*")
# RFC 8461 §3.2 sts-policy-ext-value: visible characters, UTF-8 beyond ASCII,
# and spaces between them.
_VALUE = re.compile(
    r"[\x21-\x7e\x80-\U0010ffff]([\x20-\x7e\x80-\U0010ffff]*[\x21-\x7e\x80-\U0010ffff])?"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# RFC 8461 §3.2 sts-policy-mx-value: ["*."] Domain (RFC 5321 §4.1.2), A-labels.
_MX_PATTERN = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_MAX_AGE = re.compile(r"[0-9]{1,10}")


class PolicyError(ValueError):
    """A policy that breaks RFC 8461 §3.2: a sender must not use it."""


class StsMode(enum.Enum):
    """What a sender does with a policy (RFC 8461 §5)."""

    ENFORCE = "enforce"
    """Deliver only to matching MX hosts over TLS with a valid certificate."""
    TESTING = "testing"
    """Deliver as without a policy, and report failures (RFC 8460)."""
    NONE = "none"
    """The domain has withdrawn its policy."""


@dataclass(frozen=True)
class StsPolicy:
    """A valid MTA-STS policy.

    Attributes:
        mode: enforce, testing or none.
        mx: the MX host patterns, lower case: host names, or ``*.`` and a
            domain to allow any host one label below it. Empty only with mode
            ``none``.
        max_age: seconds the policy may be cached, at most
            :data:`MAX_AGE_LIMIT`.
        extensions: unknown fields, in order (ignored).
        lines: the policy's lines as it was served, without their line ends
            and without empty lines at the end: what a TLS report gives as
            its policy strings (RFC 8460 §4.4); empty for a policy built
            rather than parsed. It takes no part in comparisons: policies
            alike in their fields are the same policy.
    """

    mode: StsMode
    mx: tuple[str, ...]
    max_age: int
    extensions: tuple[tuple[str, str], ...] = ()
    lines: tuple[str, ...] = field(default=(), compare=False)

    def allows(self, host: str) -> bool:
        """Whether the MX host ``host`` matches one of the policy's patterns."""
        return mx_matches(self, host)

    def text(self) -> str:
        """The policy as it was served (its :attr:`lines`), else as a sender
        would be served it; LF line ends."""
        if self.lines:
            return "".join(f"{line}\n" for line in self.lines)
        lines = [f"version: STSv1\nmode: {self.mode.value}\n"]
        lines.extend(f"mx: {pattern}\n" for pattern in self.mx)
        lines.append(f"max_age: {self.max_age}\n")
        lines.extend(f"{key}: {value}\n" for key, value in self.extensions)
        return "".join(lines)

    @property
    def served_lines(self) -> tuple[str, ...]:
        """The lines of :meth:`text`, without line ends: the policy strings
        of a TLS report (RFC 8460 §4.4)."""
        return self.lines or tuple(self.text().removesuffix("\n").split("\n"))


def mx_matches(policy: StsPolicy, host: str) -> bool:
    """Whether MX host ``host`` matches a pattern of ``policy`` (RFC 8461 §4.1).

    Names compare case-insensitively, a final dot ignored. A pattern
    ``*.example.net`` matches a name exactly one label below ``example.net``
    (``mx1.example.net``), never ``example.net`` itself nor
    ``a.b.example.net``. The mode plays no part: a policy of mode ``none``
    with no patterns matches nothing.
    """
    name = host.rstrip(".").lower()
    label, _, parent = name.partition(".")
    for pattern in policy.mx:
        if pattern.startswith("*."):
            if label and parent == pattern[2:]:
                return True
        elif name == pattern:
            return True
    return False


def parse_policy(text: str) -> StsPolicy:
    """Parse a policy body; LF or CRLF line ends. The policy keeps its lines
    as they came (:attr:`StsPolicy.lines`).

    Empty lines at the end are tolerated; anywhere else they are errors.

    Raises:
        PolicyError: any syntax error, a missing ``version``, ``mode`` or
            ``max_age``, no ``mx`` unless the mode is ``none``, or a
            ``max_age`` above one year.
    """
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    fields: dict[str, str] = {}
    mx: list[str] = []
    extensions: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        match = _FIELD.fullmatch(line)
        if match is None or not _VALUE.fullmatch(match[2]):
            raise PolicyError(f"line {number} is not a 'key: value' field: {line!r}")
        key, value = match.groups()
        if key == "mx":
            mx.append(_mx_pattern(value))
        elif key in ("version", "mode", "max_age"):
            fields.setdefault(key, value)
        else:
            extensions.append((key, value))
    return StsPolicy(
        _mode(fields, mx),
        tuple(mx),
        _max_age(fields),
        tuple(extensions),
        tuple(lines),
    )


def _mode(fields: dict[str, str], mx: list[str]) -> StsMode:
    version = fields.get("version")
    if version != "STSv1":
        raise PolicyError(f"version must be STSv1, not {version!r}")
    value = fields.get("mode")
    try:
        mode = StsMode(value)
    except ValueError:
        raise PolicyError(
            f"mode must be enforce, testing or none, not {value!r}"
        ) from None
    if not mx and mode is not StsMode.NONE:
        raise PolicyError(f"a policy of mode {mode.value} needs an mx field")
    return mode


def _max_age(fields: dict[str, str]) -> int:
    value = fields.get("max_age")
    if value is None or not _MAX_AGE.fullmatch(value):
        raise PolicyError(f"max_age must be 1 to 10 digits, not {value!r}")
    seconds = int(value)
    if seconds > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age {seconds} is above {MAX_AGE_LIMIT} (one year)")
    return seconds


def _mx_pattern(value: str) -> str:
    if not _MX_PATTERN.fullmatch(value) or len(value) > 253:
        raise PolicyError(f"mx must be a host name or *. and a domain, not {value!r}")
    return value.lower()
