"""TLS toward a recipient domain's exchangers, as the domain asks for it.

:class:`ExchangerTls` finds what the domain and its exchangers published,
the MTA-STS policy (RFC 8461) and, with ``DirectConfig.dnssec``, DANE TLSA
records (RFC 7672), and :meth:`DomainTls.policy` turns it into one
:class:`~mailstrom_py.delivery.tls_policy.TlsPolicy` per exchanger through
:func:`~mailstrom_py.delivery.tls_policy.decide_tls`.

- A policy in mode ``enforce`` limits delivery to the exchangers matching its
  ``mx`` patterns (:attr:`DomainTls.hosts`); an exchanger with
  authenticated TLSA records is held to DANE instead (RFC 8461 §2).
- When no exchanger matches, the policy is fetched again before the
  recipients are deferred (RFC 8461 §5.1).
- TLSA records are looked up only for the exchangers of a route whose MX
  records came DNSSEC-authenticated, and only for those whose address
  records did too (RFC 7672 §2.2.1, §2.2.2); elsewhere DANE does not apply,
  as at Postfix's ``dane`` level.
- An exchanger whose name is an alias (a secure CNAME chain) has its TLSA
  records looked up at the fully expanded name first, then at its own name
  (RFC 7672 §2.2.2). A recipient domain that is an alias (its MX records
  found through a secure CNAME chain) has its expanded name accepted in
  DANE-TA certificates besides its own (§3.2.2).
- A TLSA lookup that fails (SERVFAIL, a timeout: with a validating resolver,
  often a bogus answer) keeps the exchanger out of this delivery (RFC 7672
  §2.2).
- TLSA answers, denials included, are kept for their TTL in one cache per
  :class:`ExchangerTls`, of ``DirectConfig.mx_cache_size`` names; failed
  lookups are not kept.
- ``TLS-Required: No`` (without REQUIRETLS) skips every lookup: the message
  goes as it would without policies (RFC 8689 §5).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..codes import DIRECTORY_SERVER_FAILURE
from ..config import DirectConfig
from ..message import PreparedEmail
from .routing.answers import AnswerCache
from .routing.dane import TlsaLookup, lookup_tlsa
from .routing.dnsquery import DnsAnswer
from .routing.mta_sts import (
    FilePolicyStore,
    MtaSts,
    PolicyFetcher,
    PolicyStore,
    StsOutcome,
)
from .routing.mx import MxHost, Route
from .smtp import SessionFailure
from .tls_policy import DestinationTls, TlsPolicy, decide_tls, unverified_context

if TYPE_CHECKING:
    import dns.resolver

__all__ = ["DomainTls", "ExchangerTls", "build_mta_sts"]

log = logging.getLogger(__name__)


def build_mta_sts(
    direct: DirectConfig,
    resolver: dns.resolver.Resolver,
    store: PolicyStore | None = None,
) -> MtaSts | None:
    """The MTA-STS finder ``direct`` asks for, or None when it is off: policies
    fetched with ``direct``'s authenticated context and kept in
    ``mta_sts_cache`` when it names a file, else in ``store``, else in memory.

    Raises:
        ConfigError: the CA file cannot be read.
    """
    if not direct.mta_sts:
        return None
    fetcher = PolicyFetcher(resolver, direct.authenticated_context())
    if direct.mta_sts_cache:
        store = FilePolicyStore(direct.mta_sts_cache)
    return MtaSts(resolver, store=store, fetch=fetcher)


class ExchangerTls:
    """Finds the TLS each exchanger of a recipient domain gets; safe for
    several threads.

    Args:
        direct: the settings (MTA-STS, DNSSEC, contexts, the SMTP port).
        resolver: the resolver of MX lookups, asked for TLSA records.
        context: the client context of opportunistic or configured TLS.
        require_tls: ``Config.require_tls``.
        mta_sts: finds MTA-STS policies; None leaves them out.
        clock: monotonic seconds, for the expiry of cached TLSA answers.

    Raises:
        ConfigError: the CA file cannot be read.
    """

    def __init__(
        self,
        direct: DirectConfig,
        resolver: dns.resolver.Resolver,
        context: ssl.SSLContext | None,
        *,
        require_tls: bool = False,
        mta_sts: MtaSts | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.direct = direct
        self.resolver = resolver
        self.context = context
        self.require_tls = require_tls
        self.mta_sts = mta_sts
        self.authenticated = direct.authenticated_context() if mta_sts else None
        self.unverified = unverified_context() if direct.dnssec else None
        self.tlsa_cache = AnswerCache[DnsAnswer](direct.mx_cache_size, clock)

    def toward(self, route: Route, email: PreparedEmail) -> DomainTls:
        """What TLS ``email`` gets toward ``route``'s exchangers.

        Does the lookups that may be slow before the first try, so that a
        caller can make them before it takes one of the destination's
        connections: the domain's MTA-STS policy (unless the message waives
        policies; fetched again when it allows no exchanger), the TLSA
        records of the exchangers the policy does not name (DANE may still
        allow them), and those of the first exchanger allowed. Later
        exchangers' records are looked up only if they are tried
        (:meth:`DomainTls.policy`): most mail never needs them.
        """
        domain = route.domain
        waived = email.tls_optional and not email.require_tls
        sts = None
        if self.mta_sts is not None and not waived and not domain.startswith("["):
            sts = self.mta_sts.policy(domain)
            if sts.detail:
                log.info("MTA-STS for %s: %s", domain, sts.detail)
        tls = DomainTls(self, route, email, sts, waived=waived)
        if tls.hosts:
            tls.dane(tls.hosts[0].name)
        return tls


class DomainTls:
    """TLS toward one domain's exchangers for one message: the domain's
    MTA-STS policy, the exchangers it allows (found when it is made, see
    :meth:`ExchangerTls.toward`), and each exchanger's TLSA records once
    looked up.

    Attributes:
        domain: the recipient domain.
        sts: its MTA-STS policy as found, or None (not looked up).
        hosts: the exchangers mail may go to, in the route's order.
        left_out: why the others may not ("" if none was left out).
    """

    def __init__(
        self,
        finder: ExchangerTls,
        route: Route,
        email: PreparedEmail,
        sts: StsOutcome | None,
        *,
        waived: bool,
    ) -> None:
        self.domain = route.domain
        self.sts = sts
        self._finder = finder
        self._route = route
        self._email = email
        self._waived = waived
        self._tlsa: dict[str, TlsaLookup] = {}
        self.hosts, self.left_out = self._exchangers(route.hosts)

    def _exchangers(self, hosts: Sequence[MxHost]) -> tuple[list[MxHost], str]:
        allowed = self._allowed(hosts)
        if allowed or not hosts or self.sts is None or not self.sts.enforced:
            return allowed, self._left_out(hosts, allowed)
        finder = self._finder
        if finder.mta_sts is not None:  # RFC 8461 §5.1: refresh before failing
            self.sts = finder.mta_sts.policy(self.domain, refresh=True)
        allowed = self._allowed(hosts)
        return allowed, self._left_out(hosts, allowed)

    def policy(self, host: str) -> TlsPolicy | SessionFailure:
        """The TLS policy toward exchanger ``host``, or why it may not be used."""
        dane = self.dane(host)
        if dane is not None and dane.status == "failed":
            detail = f"DANE: no answer about the TLSA records of {host}: {dane.detail}"
            return SessionFailure(detail, DIRECTORY_SERVER_FAILURE, connected=False)
        finder = self._finder
        route = self._route
        destination = DestinationTls(
            self.domain,
            mta_sts=self.sts,
            dane=dane,
            expanded_domain=route.expanded if route.authentic else "",
            authenticated=finder.authenticated,
            unverified=finder.unverified,
        )
        return decide_tls(
            finder.direct,
            finder.context,
            require_tls=finder.require_tls,
            email=self._email,
            destination=destination,
        )

    def dane(self, host: str) -> TlsaLookup | None:
        """The TLSA records of exchanger ``host`` (looked up once), or None
        when DANE is off or waived for the message.

        They are looked up only when the route's MX records and the host's
        address records came DNSSEC-authenticated. Otherwise DANE does not
        apply (status ``insecure``): an attacker who can forge those answers
        could send the mail elsewhere anyway, and an exchanger it names must
        not escape the domain's MTA-STS policy by publishing TLSA records
        (RFC 7672 §2.2.1, §2.2.2; Postfix does the same at its ``dane``
        level). A lookup that fails for a secure host keeps it out (§2.2).
        """
        finder = self._finder
        if self._waived or not finder.direct.dnssec:
            return None
        found = self._tlsa.get(host)
        if found is None:
            found = self._lookup(host)
            self._tlsa[host] = found
        return found

    def _lookup(self, host: str) -> TlsaLookup:
        route = self._route
        if not route.authentic:
            detail = f"the MX records of {route.domain} are not DNSSEC-authenticated"
            return TlsaLookup(host, "insecure", (), detail)
        exchanger = next((h for h in route.hosts if h.name == host), None)
        if exchanger is None or not exchanger.authentic:
            detail = f"the address records of {host} are not DNSSEC-authenticated"
            return TlsaLookup(host, "insecure", (), detail)
        finder = self._finder
        found = lookup_tlsa(
            finder.resolver,
            host,
            dnssec_trusted=True,
            port=finder.direct.smtp_port,
            expanded=exchanger.expanded,
            cache=finder.tlsa_cache,
        )
        if found.status not in ("usable", "absent"):
            log.info("DANE for %s: %s", host, found.detail)
        return found

    def _allowed(self, hosts: Sequence[MxHost]) -> list[MxHost]:
        sts = self.sts
        if sts is None or not sts.enforced or sts.policy is None:
            return list(hosts)
        policy = sts.policy
        return [
            host
            for host in hosts
            if policy.allows(host.name) or self._dane_applies(host.name)
        ]

    def _left_out(self, hosts: Sequence[MxHost], allowed: list[MxHost]) -> str:
        others = [host.name for host in hosts if host not in allowed]
        if not others or self.sts is None or self.sts.policy is None:
            return ""
        patterns = ", ".join(self.sts.policy.mx)
        return (
            f"MTA-STS: the policy of {self.domain} allows only MX hosts matching "
            f"{patterns}, not {', '.join(others)}"
        )

    def _dane_applies(self, host: str) -> bool:
        dane = self.dane(host)
        return dane is not None and dane.requires_tls
