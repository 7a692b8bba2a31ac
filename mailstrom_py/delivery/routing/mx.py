"""Where a domain's mail goes: MX lookup, null and implicit MX, ordering, caching.

:class:`MxResolver` turns a recipient domain into a :class:`Route`, the mail
exchangers to try in order with their addresses, following RFC 5321 §5.1 and
RFC 7505:

- MX records sorted by preference; equal preferences shuffled (dnspython returns
  them in wire order, neither sorted nor shuffled).
- MX records exist: only their hosts are used, never the domain's own addresses.
- No MX records (the name exists): the domain itself is the exchanger (implicit MX).
- A single MX of ``.`` (null MX): the domain accepts no mail; 556 5.1.10.
- NXDOMAIN, or no address for any exchanger: a permanent failure (5.4.4).
- SERVFAIL, REFUSED, timeouts and over-long CNAME chains: transient (4.4.3).

Answers are cached for their TTL (negative answers for the SOA's negative TTL);
transient failures never are. One resolver may serve several threads.

With ``dnssec=True`` the questions ask for DNSSEC, and the route says whether
its MX records (:attr:`Route.authentic`) and each exchanger's address records
(:attr:`MxHost.authentic`) came authenticated, and the names CNAMEs lead to,
an exchanger's (:attr:`MxHost.expanded`) and the domain's own
(:attr:`Route.expanded`): what DANE needs to know (RFC 7672 §2.2.1, §2.2.2,
§3.2.2).
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...codes import (
    DIRECTORY_SERVER_FAILURE,
    NULL_MX,
    UNABLE_TO_ROUTE,
)
from ...config import DirectConfig
from ...errors import ConfigError
from .answers import Answer, AnswerCache, CachedLookup
from .dnsquery import DnsTrouble
from .route import MxHost, Route, RouteError

# dnspython is imported on first use, in the functions that call it (for its
# cost, not to dodge a cycle): it takes some 70 ms to import, which a program
# that only ever delivers through a relay need not pay.
if TYPE_CHECKING:
    import dns.name
    import dns.resolver

__all__ = ["MxHost", "MxResolver", "Route", "RouteError", "build_resolver"]

#: The longest chain of CNAMEs followed for one name (mox allows 16, dnspython 16).
MAX_CNAME_CHAIN = 8


class MxResolver:
    """Resolves recipient domains to routes through a ``dns.resolver.Resolver``.

    One route takes at most twice the resolver's lifetime, however many
    exchangers fail to answer: lookups that would run past that budget are
    counted as DNS trouble, so a broken domain cannot hold a delivery thread
    for long.

    Args:
        resolver: asks the DNS; used as given (its timeout and lifetime bound
            every lookup).
        cache_size: how many answers to keep; 0 disables the cache.
        clock: monotonic seconds, for cache expiry.
        rng: shuffles MX hosts of equal preference.
        max_cname_chain: the most CNAMEs followed for one name.
        dnssec: ask with the DO and AD bits, so that routes tell which of
            their answers the resolver authenticated.
    """

    def __init__(
        self,
        resolver: dns.resolver.Resolver,
        *,
        cache_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        max_cname_chain: int = MAX_CNAME_CHAIN,
        dnssec: bool = False,
    ) -> None:
        self._resolver = resolver
        self._cache = AnswerCache[Answer](cache_size, clock)
        self._rng = rng if rng is not None else random.Random()
        self._rng_lock = threading.Lock()
        self._lookup = CachedLookup(
            resolver, self._cache, max_cname_chain, dnssec=dnssec
        )

    def route(self, domain: str, *, want_addresses: int = 5) -> Route:
        """Return the exchangers for ``domain`` (an A-label name or address literal).

        Exchangers are resolved in order until ``want_addresses`` addresses are
        known; the rest are left out, as no delivery would reach them.

        Raises:
            RouteError: the domain has no usable exchanger, for now or for good.
        """
        literal = _literal(domain)
        if literal is not None:
            return Route(domain, (_host_for(literal, 0, [literal]),))
        deadline = time.monotonic() + 2 * self._resolver.lifetime
        try:
            mx = self._lookup(domain, "MX", deadline)
        except DnsTrouble as exc:
            raise RouteError(
                str(exc), DIRECTORY_SERVER_FAILURE, permanent=False
            ) from None
        if mx.kind == "nxdomain":
            raise RouteError(
                f"{domain}: no such domain", UNABLE_TO_ROUTE, permanent=True
            )
        if mx.kind == "nodata":
            # RFC 5321 §5.1: no MX records, so the domain is its own exchanger.
            host = self._exchanger(domain, 0, deadline)
            return Route(
                domain,
                (host,),
                implicit=True,
                authentic=mx.authentic,
                expanded=host.expanded,
            )
        exchanges = [(pref, name) for pref, name in mx.records if name != ""]
        if not exchanges:
            # RFC 7505 §4.1: a lone "." says the domain accepts no mail.
            raise RouteError(
                f"556 5.1.10 {domain} accepts no mail (null MX)",
                NULL_MX,
                permanent=True,
            )
        hosts: list[MxHost] = []
        problems: list[str] = []
        transient = False
        found = 0
        for pref, name in self._ordered(exchanges):
            if found >= want_addresses:
                break
            try:
                host = self._exchanger(name, pref, deadline)
            except RouteError as exc:
                problems.append(exc.detail)
                transient |= not exc.permanent
                continue
            hosts.append(host)
            found += len(host.ipv6) + len(host.ipv4)
        if hosts:
            return Route(
                domain, tuple(hosts), authentic=mx.authentic, expanded=mx.expanded
            )
        detail = f"no mail exchanger of {domain} has an address: " + "; ".join(problems)
        if transient:
            raise RouteError(detail, DIRECTORY_SERVER_FAILURE, permanent=False)
        raise RouteError(detail, UNABLE_TO_ROUTE, permanent=True)

    def addresses(self, host: str) -> list[str]:
        """Return the IPv6 and IPv4 addresses of ``host`` (IPv6 first).

        An IP address is returned as it is. A lookup that fails for one family
        is ignored when the other family has addresses.

        Raises:
            RouteError: no address, permanently (no such host, no A or AAAA
                records) or for now (DNS trouble).
        """
        if _is_ip(host):
            return [host]
        deadline = time.monotonic() + 2 * self._resolver.lifetime
        return self._resolve_host(host, deadline).addresses

    def clear_cache(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()

    def _exchanger(self, name: str, preference: int, deadline: float) -> MxHost:
        found = self._resolve_host(name, deadline)
        return _host_for(
            name,
            preference,
            found.addresses,
            authentic=found.authentic,
            expanded=found.expanded,
        )

    def _resolve_host(self, host: str, deadline: float) -> _HostAddresses:
        """``addresses()`` for a name from DNS (an MX target, never taken as
        an IP), whether every answer that gave addresses was authentic, and
        the name CNAMEs led to."""
        found: list[str] = []
        trouble: list[str] = []
        missing: list[str] = []
        authentic = True
        expanded = ""
        for rdtype in ("AAAA", "A"):
            try:
                answer = self._lookup(host, rdtype, deadline)
            except DnsTrouble as exc:
                trouble.append(str(exc))
                continue
            if answer.kind == "nxdomain":
                missing.append(f"{host}: no such host")
                break  # no name, so no record of any type
            if answer.kind == "nodata":
                missing.append(f"{host}: no {rdtype} record")
            if answer.records:
                found.extend(address for _, address in answer.records)
                authentic &= answer.authentic
                expanded = expanded or answer.expanded
        if found:
            return _HostAddresses(found, authentic, expanded)
        if trouble:
            raise RouteError(
                "; ".join(trouble), DIRECTORY_SERVER_FAILURE, permanent=False
            )
        raise RouteError("; ".join(missing), UNABLE_TO_ROUTE, permanent=True)

    def _ordered(self, exchanges: list[tuple[int, str]]) -> list[tuple[int, str]]:
        best: dict[str, int] = {}
        for pref, name in exchanges:
            best[name] = min(pref, best.get(name, pref))
        by_preference: dict[int, list[str]] = {}
        for name, pref in best.items():
            by_preference.setdefault(pref, []).append(name)
        ordered: list[tuple[int, str]] = []
        with self._rng_lock:
            for pref in sorted(by_preference):
                names = by_preference[pref]
                self._rng.shuffle(names)
                ordered.extend((pref, name) for name in names)
        return ordered


def build_resolver(direct: DirectConfig) -> dns.resolver.Resolver:
    """Return the resolver ``direct`` asks for: its own, or one built from its settings.

    Raises:
        ConfigError: no nameservers were given and the system has none configured.
    """
    import dns.exception  # noqa: PLC0415 (imported on first use)
    import dns.resolver  # noqa: PLC0415

    if direct.resolver is not None:
        return direct.resolver
    try:
        resolver = dns.resolver.Resolver(configure=direct.nameservers is None)
    except dns.exception.DNSException as exc:
        raise ConfigError(
            f"the system has no DNS configuration ({exc}); give nameservers",
            "nameservers",
        ) from exc
    if direct.nameservers is not None:
        resolver.nameservers = list(direct.nameservers)
    resolver.port = direct.dns_port
    resolver.timeout = direct.dns_timeout
    resolver.lifetime = direct.dns_lifetime
    return resolver


@dataclass(frozen=True)
class _HostAddresses:
    """A host name's addresses, whether they came authenticated, and the
    fully CNAME-expanded name that holds them ("" when no CNAME)."""

    addresses: list[str]
    authentic: bool
    expanded: str


def _host_for(
    name: str,
    preference: int,
    addresses: list[str],
    *,
    authentic: bool = False,
    expanded: str = "",
) -> MxHost:
    ipv6 = tuple(a for a in addresses if ":" in a)
    ipv4 = tuple(a for a in addresses if ":" not in a)
    return MxHost(name, preference, ipv6, ipv4, authentic, expanded)


def _literal(domain: str) -> str | None:
    """The IP address of an RFC 5321 §4.1.3 address literal, or None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    text = domain[1:-1]
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    return text if _is_ip(text) else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
