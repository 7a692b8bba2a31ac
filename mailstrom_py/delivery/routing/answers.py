"""DNS lookups for routing, with their answers cached for their TTL.

:class:`CachedLookup` asks a ``dns.resolver.Resolver`` for one record type of
one name within a deadline, and keeps what it learns in an :class:`AnswerCache`:
positive answers for their TTL (at most :data:`MAX_TTL`), negative ones
(NXDOMAIN, no data) for the SOA's negative TTL (at most
:data:`MAX_NEGATIVE_TTL`). The lookups go through :func:`.dnsquery.query`, which
maps DNS failures to errors; trouble that may pass is never cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from ...codes import BAD_DESTINATION_SYSTEM
from .dnsquery import DnsTrouble, NotADnsName, dnssec_resolver, query
from .route import RouteError

if TYPE_CHECKING:
    import dns.rdata
    import dns.resolver

__all__ = [
    "MAX_NEGATIVE_TTL",
    "MAX_TTL",
    "Answer",
    "AnswerCache",
    "CachedLookup",
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
        """Ask for ``rdtype`` records of ``name`` by ``deadline`` (monotonic).

        Raises:
            RouteError: ``name`` is not a DNS name (permanently).
            DnsTrouble: trouble that may pass, as :func:`.dnsquery.query` says.
        """
        key = (name.lower(), rdtype)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            answer = query(self._resolver, name, rdtype, deadline=deadline)
        except NotADnsName as exc:
            raise RouteError(str(exc), BAD_DESTINATION_SYSTEM, permanent=True) from None
        if answer.cnames > self._max_cname_chain:
            raise DnsTrouble(
                f"DNS lookup of {name} {rdtype}: more than "
                f"{self._max_cname_chain} CNAMEs in a chain"
            )
        if answer.kind != "data":
            result = Answer(answer.kind, authentic=answer.authentic)
            self._cache.put(key, result, min(answer.ttl, MAX_NEGATIVE_TTL))
            return result
        records = tuple(_entry(rdata) for rdata in answer.records)
        result = Answer("data", records, answer.authentic, answer.expanded)
        self._cache.put(key, result, min(answer.ttl, MAX_TTL))
        return result


def _entry(rdata: dns.rdata.Rdata) -> tuple[int, str]:
    """An MX record as (preference, exchange), an A or AAAA one as (0, address)."""
    import dns.name  # noqa: PLC0415 (imported on first use)
    import dns.rdtypes.ANY.MX  # noqa: PLC0415

    if not isinstance(rdata, dns.rdtypes.ANY.MX.MX):
        return (0, rdata.to_text())
    # The root name, ".", is a null MX (RFC 7505); kept as "".
    if rdata.exchange == dns.name.root:
        return (int(rdata.preference), "")
    return (int(rdata.preference), rdata.exchange.to_text(omit_final_dot=True).lower())
