"""DNS lookups for routing, with their answers cached for their TTL.

:class:`CachedLookup` asks a ``dns.resolver.Resolver`` for one record type of
one name within a deadline, and keeps what it learns in an :class:`AnswerCache`:
positive answers for their TTL (at most :data:`MAX_TTL`), negative ones
(NXDOMAIN, no data) for the SOA's negative TTL (at most
:data:`MAX_NEGATIVE_TTL`). Transient failures are never cached.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from ...codes import BAD_DESTINATION_SYSTEM
from .dnsquery import dnssec_resolver
from .route import RouteError

if TYPE_CHECKING:
    import dns.name
    import dns.resolver

__all__ = [
    "MAX_NEGATIVE_TTL",
    "MAX_TTL",
    "Answer",
    "AnswerCache",
    "CachedLookup",
    "Transient",
]

V = TypeVar("V")

#: The longest a positive answer is kept, whatever its TTL says (one day).
MAX_TTL = 86400
#: The longest a negative answer is kept (RFC 2308 §5 suggests at most hours).
MAX_NEGATIVE_TTL = 3600


@dataclass(frozen=True)
class Answer:
    kind: Literal["data", "nxdomain", "nodata"]
    records: tuple[tuple[int, str], ...] = ()
    """MX: (preference, exchange); A/AAAA: (0, address)."""
    authentic: bool = False
    """The response had the AD bit (asked for only by a ``dnssec`` lookup):
    the resolver authenticated every record of the answer, the CNAMEs leading
    to it included (RFC 4035 §3.2.3)."""
    expanded: str = ""
    """For data found through CNAMEs: the fully expanded name that holds it
    (lower case, no final dot); "" when the name asked holds the data."""


class Transient(Exception):
    """A lookup failed in a way that may pass; never cached."""


class AnswerCache(Generic[V]):
    """A bounded LRU map of DNS answers (of type ``V``) that expire;
    thread-safe. ``size`` 0 keeps nothing."""

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[float, V]] = OrderedDict()

    def get(self, key: tuple[str, str]) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, str], answer: V, ttl: float) -> None:
        if self._size == 0 or ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + ttl, answer)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class CachedLookup:
    """Looks names up through ``resolver``, answers kept in ``cache``; a
    chain of more than ``max_cname_chain`` CNAMEs is trouble that may pass.
    With ``dnssec`` every question carries the DO and AD bits, and each
    answer says whether it came authenticated. Thread-safe as the resolver is."""

    def __init__(
        self,
        resolver: dns.resolver.Resolver,
        cache: AnswerCache[Answer],
        max_cname_chain: int,
        *,
        dnssec: bool = False,
    ) -> None:
        self._resolver = dnssec_resolver(resolver) if dnssec else resolver
        self._cache = cache
        self._max_cname_chain = max_cname_chain

    def __call__(self, name: str, rdtype: str, deadline: float) -> Answer:
        """Ask for ``rdtype`` records of ``name`` by ``deadline`` (monotonic); raise
        RouteError for a bad name and Transient for trouble that may pass."""
        import dns.exception  # noqa: PLC0415 (imported on first use)
        import dns.flags  # noqa: PLC0415
        import dns.name  # noqa: PLC0415
        import dns.rdatatype  # noqa: PLC0415
        import dns.resolver  # noqa: PLC0415

        key = (name.lower(), rdtype)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise RouteError(
                f"{name!r} is not a DNS name ({exc})",
                BAD_DESTINATION_SYSTEM,
                permanent=True,
            ) from None
        kind = dns.rdatatype.from_text(rdtype)
        left = min(self._resolver.lifetime, deadline - time.monotonic())
        if left <= 0:
            raise Transient(f"no time left to look up {name} {rdtype}")
        try:
            answer = self._resolver.resolve(
                qname, kind, raise_on_no_answer=False, search=False, lifetime=left
            )
        except dns.resolver.NXDOMAIN as exc:
            result = Answer("nxdomain")
            self._cache.put(key, result, negative_ttl(exc, qname))
            return result
        except dns.exception.Timeout:
            raise Transient(f"DNS lookup of {name} {rdtype} timed out") from None
        except dns.resolver.NoNameservers as exc:
            raise Transient(
                f"DNS lookup of {name} {rdtype} failed (SERVFAIL or REFUSED): {exc}"
            ) from None
        except dns.exception.DNSException as exc:
            raise Transient(f"DNS lookup of {name} {rdtype} failed: {exc}") from None
        authentic = bool(answer.response.flags & dns.flags.AD)
        chain = answer.chaining_result
        if len(chain.cnames) > self._max_cname_chain:
            raise Transient(
                f"DNS lookup of {name} {rdtype}: more than "
                f"{self._max_cname_chain} CNAMEs in a chain"
            )
        if answer.rrset is None:
            result = Answer("nodata", authentic=authentic)
            self._cache.put(key, result, min(chain.minimum_ttl, MAX_NEGATIVE_TTL))
            return result
        records: list[tuple[int, str]] = []
        for rdata in answer.rrset:
            if rdtype == "MX":
                # The root name, ".", is a null MX (RFC 7505); kept as "".
                exchange = rdata.exchange.to_text(omit_final_dot=True).lower()
                if rdata.exchange == dns.name.root:
                    exchange = ""
                records.append((int(rdata.preference), exchange))
            else:
                records.append((0, str(rdata.address)))
        expanded = ""
        if chain.cnames:
            expanded = chain.canonical_name.to_text(omit_final_dot=True).lower()
        result = Answer("data", tuple(records), authentic, expanded)
        self._cache.put(key, result, min(chain.minimum_ttl, MAX_TTL))
        return result


def negative_ttl(exc: dns.resolver.NXDOMAIN, qname: dns.name.Name) -> float:
    """How long to keep the NXDOMAIN ``exc`` for ``qname``: the SOA's
    negative TTL, at most :data:`MAX_NEGATIVE_TTL`; 0 when it has none."""
    import dns.exception  # noqa: PLC0415 (imported on first use)
    import dns.message  # noqa: PLC0415

    response = exc.kwargs.get("responses", {}).get(qname)
    if not isinstance(response, dns.message.QueryMessage):
        return 0.0
    try:
        ttl = response.resolve_chaining().minimum_ttl
    except dns.exception.DNSException:
        return 0.0
    return float(min(ttl, MAX_NEGATIVE_TTL))
