"""Delivery straight to each recipient domain's mail exchangers.

For every domain among a message's pending recipients, :class:`DirectTransport`
asks :class:`~mailstrom_py.delivery.routing.MxResolver` for the exchangers, then tries
their addresses in order (RFC 5321 §5.1) until the recipients are settled:

- A refused or timed-out connection, a 421 or 5xx greeting, a failed TLS setup,
  or a transaction that ends with recipients deferred (a 4xx, a connection lost
  before the final dot) moves those recipients on to the next address.
- A connection lost after the final dot stops the delivery to that domain: the
  message may have arrived, and another exchanger would duplicate it.
- At most ``DirectConfig.max_addresses`` addresses and ``max_sessions`` accepted
  connections per domain and delivery (Postfix's limits, 5 and 2); recipients
  still unsettled are deferred with the most telling failure.

TLS toward each exchanger is decided by
:class:`~mailstrom_py.delivery.exchanger_tls.ExchangerTls` from the
configuration, the message, the domain's MTA-STS policy and the exchanger's
DANE records; an MTA-STS policy in mode ``enforce`` also leaves out the
exchangers it does not name (they are never contacted).

Each exchanger's addresses are tried IPv6 and IPv4 alternately. Each attempt at a
message starts with the address family the previous attempt did not start with
(mox does this): a block or a broken route on one family does not hold a message
up for good.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence

from ..codes import OTHER_SECURITY_TRANSIENT
from ..config import DirectConfig, ShapingConfig, Timeouts
from ..message import PreparedEmail
from ..status import DeliveryResult
from .base import Outcome
from .domain_attempt import DomainAttempt, FamilyMemory, Target, targets
from .exchanger_tls import DomainTls, ExchangerTls, build_mta_sts
from .routing.mta_sts import MtaSts, PolicyStore
from .routing.mx import MxResolver, RouteError, build_resolver
from .shaping import Destination, Shaper, held_outcomes
from .smtp import SessionFailure, SmtpSession
from .smtp.peer import held_to
from .smtp.pool import SessionPool
from .tls_policy import TlsPolicy, client_context
from .unreached import deferred

__all__ = ["DirectTransport"]

log = logging.getLogger(__name__)


class DirectTransport:
    """Sends each message to its recipients' mail exchangers; see the module doc.

    Args:
        direct: DNS, port, limits and TLS settings.
        helo_name: our name in EHLO/HELO.
        timeouts: per-step SMTP timeouts.
        require_tls: never deliver in plaintext (``Config.require_tls``).
        clock: monotonic seconds, for the DNS cache.
        rng: shuffles exchangers of equal preference.
        mx: a ready :class:`MxResolver`; built from ``direct`` by default.
        sessions: where sessions are kept for the next message to the same
            exchanger; a new :class:`SessionPool` by default.
        shaper: the limits of each destination (a domain's set of
            exchangers): connections at once, messages per connection, a
            rate, suspensions; by default 20 connections and no rate.
        mta_sts: finds recipient domains' MTA-STS policies; by default one on
            ``direct``'s resolver and cache file, unless ``direct.mta_sts`` is
            off.
        policy_store: where the default MTA-STS finder keeps policies when
            ``direct.mta_sts_cache`` names no file (the mailer passes its
            storage's); in memory by default.

    Raises:
        ConfigError: no DNS configuration, or a CA file that cannot be read.
    """

    def __init__(
        self,
        direct: DirectConfig,
        *,
        helo_name: str,
        timeouts: Timeouts,
        require_tls: bool = False,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        mx: MxResolver | None = None,
        sessions: SessionPool | None = None,
        shaper: Shaper | None = None,
        mta_sts: MtaSts | None = None,
        policy_store: PolicyStore | None = None,
    ) -> None:
        self._sessions = sessions if sessions is not None else SessionPool()
        self._shaper = shaper if shaper is not None else Shaper(ShapingConfig())
        resolver = build_resolver(direct)
        self._mx = (
            mx
            if mx is not None
            else MxResolver(
                resolver,
                cache_size=direct.mx_cache_size,
                clock=clock,
                rng=rng,
                dnssec=direct.dnssec,
            )
        )
        self._port = direct.smtp_port
        self._helo_name = helo_name
        self._timeouts = timeouts
        self._tls = ExchangerTls(
            direct,
            resolver,
            client_context(direct),
            require_tls=require_tls,
            mta_sts=(
                mta_sts
                if mta_sts is not None
                else build_mta_sts(direct, resolver, policy_store)
            ),
            clock=clock,
        )
        self._max_addresses = direct.max_addresses
        self._max_sessions = direct.max_sessions
        self._families = FamilyMemory()

    def deliver(self, email: PreparedEmail, recipients: Sequence[str]) -> list[Outcome]:
        """Deliver ``email`` to ``recipients``, domain by domain; one outcome each."""
        by_domain: dict[str, list[str]] = {}
        for address in recipients:
            domain = address.rpartition("@")[2].lower()
            by_domain.setdefault(domain, []).append(address)
        outcomes: list[Outcome] = []
        for domain, group in by_domain.items():
            outcomes.extend(self._deliver_domain(email, domain, group))
        return outcomes

    def close(self) -> None:
        """Close the sessions kept open for reuse."""
        self._sessions.close()

    def _deliver_domain(
        self, email: PreparedEmail, domain: str, recipients: list[str]
    ) -> list[Outcome]:
        try:
            route = self._mx.route(domain, want_addresses=self._max_addresses)
        except RouteError as exc:
            log.info("no route to %s: %s", domain, exc.detail)
            result = DeliveryResult.FAILED if exc.permanent else DeliveryResult.DEFERRED
            return [Outcome(r, result, exc.status_code, exc.detail) for r in recipients]
        destination = self._shaper.for_exchangers(
            [host.name for host in route.hosts], domain
        )
        hold = self._shaper.held(destination) or self._shaper.turn(destination)
        if hold is not None:
            return held_outcomes(recipients, hold)
        # The MTA-STS policy may take an HTTPS fetch of seconds, the first
        # exchanger's TLSA records a slow DNS answer: look them up before
        # taking one of the destination's few connections.
        tls = self._tls.toward(route, email)
        with self._shaper.connection(destination):
            outcomes = self._attempt(email, recipients, destination, tls)
        self._shaper.observe(destination, outcomes)
        return outcomes

    def _attempt(
        self,
        email: PreparedEmail,
        recipients: list[str],
        destination: Destination,
        tls: DomainTls,
    ) -> list[Outcome]:
        """Deliver to the exchangers that the domain's TLS policy ``tls``
        allows, in turn, until settled."""
        domain = tls.domain
        hosts, left_out = tls.hosts, tls.left_out
        if left_out:
            log.warning("%s", left_out)
        if not hosts:
            return deferred(recipients, OTHER_SECURITY_TRANSIENT, left_out)
        attempt = DomainAttempt(
            email, domain, recipients, self._max_sessions, self._families
        )
        for target in targets(
            email.message_id, hosts, self._families, self._max_addresses
        ):
            if not attempt.wants_more():
                break
            policy = tls.policy(target.host)
            if isinstance(policy, SessionFailure):
                attempt.open_failed(policy)
                continue
            attempt.dialling(target)
            self._try(attempt, target, policy, destination)
        return attempt.outcomes()

    def _try(
        self,
        attempt: DomainAttempt,
        target: Target,
        tls: TlsPolicy,
        destination: Destination,
    ) -> None:
        """Send ``attempt``'s pending recipients to one exchanger address."""
        try:
            session, note = self._open(target, tls)
        except SessionFailure as failure:
            log.info("%s: %s", attempt.domain, failure.detail)
            attempt.open_failed(failure)
            return
        attempt.opened()
        try:
            outcomes = self._send(
                session, target, attempt.email, attempt.pending, destination
            )
        except SessionFailure as failure:
            attempt.send_failed(failure)
            return
        # A kept session may have served another domain: say whose policy held.
        attempt.sent([_labelled(o, tls) for o in outcomes], note)

    def _open(self, target: Target, tls: TlsPolicy) -> tuple[SmtpSession, str]:
        """Open a session; after a failed handshake, once more as the policy
        allows (see :meth:`TlsPolicy.after_failed_handshake`)."""
        try:
            return self._session(target, tls), ""
        except SessionFailure as failure:
            fallback = tls.after_failed_handshake() if failure.tls_failed else None
            if fallback is None:
                raise
            log.info("%s; trying again without TLS", failure.detail)
            return self._session(target, fallback), f"in plaintext: {failure.detail}"

    def _send(
        self,
        session: SmtpSession,
        target: Target,
        email: PreparedEmail,
        recipients: list[str],
        destination: Destination,
    ) -> list[Outcome]:
        """Send on ``session``; if it was a kept one found closed, on a new one.

        Raises:
            SessionFailure: the replacement session could not be opened.
        """
        tls = session.tls
        return self._sessions.use(
            _key(session),
            session,
            lambda s: s.send(email, recipients),
            reopen=lambda: self._session(target, tls, reuse=False),
            max_messages=self._shaper.messages_per_connection(destination),
        )

    def _session(
        self, target: Target, tls: TlsPolicy, *, reuse: bool = True
    ) -> SmtpSession:
        kept = (
            self._sessions.take((target.host, target.address, tls)) if reuse else None
        )
        if kept is not None:
            return kept
        return SmtpSession.open(
            host=target.host,
            address=target.address,
            port=self._port,
            helo_name=self._helo_name,
            timeouts=self._timeouts,
            tls=tls,
        )


def _labelled(outcome: Outcome, tls: TlsPolicy) -> Outcome:
    """``outcome`` with its server named as held to ``tls``'s policy."""
    if outcome.remote is None:
        return outcome
    return dataclasses.replace(outcome, remote=held_to(outcome.remote, tls))


def _key(session: SmtpSession) -> tuple[str, str, TlsPolicy]:
    """The pool key of a session: the exchanger, its address and the TLS policy."""
    return (session.remote.host, session.remote.address, session.tls)
