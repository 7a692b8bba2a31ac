"""Bounce classification: why a recipient was deferred or refused, in one word.

:func:`classify` reads an RFC 3463 enhanced status code and the reply text
and names a :class:`BounceCategory`. The rules are data, in order of trust:

1. an enhanced code whose subject and detail name one cause (``x.1.1``: no
   such mailbox, ``x.2.2``: mailbox full, ``x.7.26``: the sender's
   authentication...);
2. the reply text, for codes that say little (``4.7.0``, ``5.0.0``) and
   servers that give none (Yahoo's ``TSS04``, "over quota");
3. the code's subject alone (``x.7.*``: policy, ``x.6.*``: content...);
4. :attr:`BounceCategory.OTHER`.

Pure and without I/O.
"""

from __future__ import annotations

import enum
import re

__all__ = ["BounceCategory", "classify"]


class BounceCategory(enum.StrEnum):
    """Why delivery to a recipient did not succeed.

    ``SENDER_CONFIG`` (the sender's SPF, DKIM, DMARC or reverse DNS) and the
    others that speak of the sender or the path (``POLICY``, ``RATE_LIMITED``,
    ``TLS``, ``DNS``, ``CONNECTION``) say nothing against the recipient's
    address: only ``BAD_MAILBOX``, ``BAD_DOMAIN`` and ``INACTIVE_MAILBOX`` do.
    """

    BAD_MAILBOX = "bad_mailbox"
    BAD_DOMAIN = "bad_domain"
    INACTIVE_MAILBOX = "inactive_mailbox"
    MAILBOX_FULL = "mailbox_full"
    POLICY = "policy"
    RATE_LIMITED = "rate_limited"
    SENDER_CONFIG = "sender_config"
    DNS = "dns"
    TLS = "tls"
    CONNECTION = "connection"
    ROUTING = "routing"
    CONTENT = "content"
    EXPIRED = "expired"
    PROTOCOL = "protocol"
    OTHER = "other"

    @property
    def recipient_fault(self) -> bool:
        """True when the category says the address itself cannot take mail."""
        return self in _RECIPIENT_FAULTS


_RECIPIENT_FAULTS = frozenset(
    {
        BounceCategory.BAD_MAILBOX,
        BounceCategory.BAD_DOMAIN,
        BounceCategory.INACTIVE_MAILBOX,
    }
)

_C = BounceCategory

# Subject.detail (the class does not matter) naming one cause.
_EXACT: dict[str, BounceCategory] = {
    "1.1": _C.BAD_MAILBOX,
    "1.3": _C.BAD_MAILBOX,
    "1.6": _C.BAD_MAILBOX,
    "1.2": _C.BAD_DOMAIN,
    "1.10": _C.BAD_DOMAIN,
    "1.7": _C.SENDER_CONFIG,
    "1.8": _C.SENDER_CONFIG,
    "2.1": _C.INACTIVE_MAILBOX,
    "2.2": _C.MAILBOX_FULL,
    "2.3": _C.CONTENT,
    "3.4": _C.CONTENT,
    "4.1": _C.CONNECTION,
    "4.2": _C.CONNECTION,
    "4.3": _C.DNS,
    "4.4": _C.ROUTING,
    "4.6": _C.ROUTING,
    "4.7": _C.EXPIRED,
    "7.4": _C.TLS,
    "7.5": _C.TLS,
    "7.10": _C.TLS,
    "7.11": _C.TLS,
    "7.29": _C.TLS,
    "7.30": _C.TLS,
    "7.8": _C.SENDER_CONFIG,
    "7.23": _C.SENDER_CONFIG,
    "7.24": _C.SENDER_CONFIG,
    "7.25": _C.SENDER_CONFIG,
    "7.26": _C.SENDER_CONFIG,
    "7.27": _C.SENDER_CONFIG,
    "7.515": _C.SENDER_CONFIG,
    "7.28": _C.RATE_LIMITED,
    "7.650": _C.RATE_LIMITED,
}

# Reply text, tried in order when the code names no cause.
_TEXT: tuple[tuple[re.Pattern[str], BounceCategory], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), category)
    for pattern, category in (
        (
            r"rate.?limit|too many (messages|connections|recipients|mails)"
            r"|throttl|\bTSS?0\d\b|sending volume|unusual rate",
            _C.RATE_LIMITED,
        ),
        (
            r"mailbox (is )?full|over ?quota|quota exceeded|insufficient storage"
            r"|mailbox size limit",
            _C.MAILBOX_FULL,
        ),
        (r"disabled|inactive|deactivated|suspended account", _C.INACTIVE_MAILBOX),
        (
            r"user unknown|unknown user|no such (user|mailbox|recipient)"
            r"|does not exist|invalid (recipient|mailbox|address)"
            r"|recipient (address )?rejected|mailbox unavailable|not found",
            _C.BAD_MAILBOX,
        ),
        (r"\bspf\b|\bdkim\b|\bdmarc\b|reverse dns|\bptr\b", _C.SENDER_CONFIG),
        (
            r"spam|block ?list|black ?list|spamhaus|reputation|policy|denied",
            _C.POLICY,
        ),
        (r"\btls\b|starttls|certificate|handshake", _C.TLS),
        (r"\bdns\b|\bmx\b|nxdomain|host not found|name lookup", _C.DNS),
        (r"virus|attachment|content|message too (big|large)", _C.CONTENT),
        (r"timed? ?out|connection (refused|reset|lost)|no answer", _C.CONNECTION),
    )
)

# The subject alone, when nothing more specific matched.
_SUBJECT: dict[str, BounceCategory] = {
    "1": _C.BAD_MAILBOX,
    "4": _C.ROUTING,
    "5": _C.PROTOCOL,
    "6": _C.CONTENT,
    "7": _C.POLICY,
}

_CODE = re.compile(r"^[245]\.(\d{1,3})\.(\d{1,3})$")


def classify(status_code: str | None, text: str | None = None) -> BounceCategory:
    """Name the cause of a deferral or refusal.

    Args:
        status_code: the RFC 3463 code (``"5.1.1"``), or None.
        text: the server's reply text or the outcome's detail, or None.

    Returns:
        The category; :attr:`BounceCategory.OTHER` when nothing tells.
    """
    match = _CODE.match(status_code.strip()) if status_code else None
    if match is not None:
        subject, detail = match.groups()
        exact = _EXACT.get(f"{int(subject)}.{int(detail)}")
        if exact is not None:
            return exact
    if text:
        for pattern, category in _TEXT:
            if pattern.search(text):
                return category
    if match is not None:
        return _SUBJECT.get(str(int(match.group(1))), _C.OTHER)
    return _C.OTHER
