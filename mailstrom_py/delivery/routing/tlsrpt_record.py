"""Where a domain wants its SMTP TLS reports: the ``_smtp._tls`` TXT record
(RFC 8460 §3).

Only ``mailto:`` addresses are used; reports over HTTPS are not sent.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import TYPE_CHECKING

from .dnsquery import query

if TYPE_CHECKING:
    import dns.resolver

__all__ = ["lookup_report_addresses", "report_addresses"]


def report_addresses(texts: list[str]) -> tuple[str, ...]:
    """The ``mailto:`` addresses of the one ``v=TLSRPTv1`` record among
    ``texts``; none when there is no such record, or more than one
    (RFC 8460 §3)."""
    records = [
        text for text in texts if text.replace(" ", "").startswith("v=TLSRPTv1;")
    ]
    if len(records) != 1:
        return ()
    addresses: list[str] = []
    for field in records[0].split(";"):
        key, _, value = field.strip().partition("=")
        if key.strip() != "rua":
            continue
        for uri in value.split(","):
            scheme, _, rest = uri.strip().partition(":")
            if scheme.lower() == "mailto" and rest:
                address = urllib.parse.unquote(rest.partition("?")[0])
                if "@" in address:
                    addresses.append(address)
    return tuple(addresses)


def lookup_report_addresses(
    resolver: dns.resolver.Resolver, domain: str
) -> tuple[str, ...]:
    """The addresses ``domain``'s TLS reports go to (empty if none).

    Raises:
        DnsTrouble: the DNS could not say.
    """
    name = "_smtp._tls." + domain.rstrip(".")
    answer = query(resolver, name, "TXT", deadline=time.monotonic() + resolver.lifetime)
    texts = [
        b"".join(rdata.strings).decode("ascii", "replace")  # type: ignore[attr-defined]
        for rdata in answer.records
    ]
    return report_addresses(texts)
