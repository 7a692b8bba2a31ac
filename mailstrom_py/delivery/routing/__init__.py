"""Where mail for a destination goes, and how much of it at once.

:mod:`.mx` resolves a recipient domain to its mail exchangers (RFC 5321 §5.1,
RFC 7505); :mod:`.limits` bounds the deliveries running at once per destination.
:mod:`.mta_sts` (RFC 8461) and :mod:`.dane` (RFC 7672) say how TLS toward a
domain's exchangers is to be authenticated; :mod:`.tlsrpt_record` where the
domain wants its TLS reports (RFC 8460); :mod:`.dnsquery` asks them their DNS
questions, with DNSSEC when DANE needs it.
"""

from __future__ import annotations

from .limits import ConcurrencyLimit
from .mx import MxHost, MxResolver, Route, RouteError, build_resolver

__all__ = [
    "ConcurrencyLimit",
    "MxHost",
    "MxResolver",
    "Route",
    "RouteError",
    "build_resolver",
]
