"""Which MTA-STS policy applies to a domain now: lookup, fetch and cache (RFC 8461 §5).

:class:`MtaSts` answers :meth:`MtaSts.policy` for a recipient domain:

- The TXT record ``_mta-sts.<domain>`` is looked up. A cached, unexpired
  policy whose record id is the one published is used as it is.
- A new id, or no usable cached policy, means fetching the policy again.
- A cached, unexpired policy outlives a missing TXT record, DNS trouble and a
  failed fetch (RFC 8461 §5: this is what makes a downgrade attack hard).
- A missing record, when no policy is cached, is remembered for the
  answer's negative TTL (at most :data:`MAX_RECORD_TTL`).
- A policy lives ``max_age`` seconds from its fetch; a failed fetch is not
  retried for the same record id within ``retry_after`` seconds (RFC 8461
  §3.3 suggests five minutes).

Cached policies go to a :class:`PolicyStore`, a two-method plug point, so that
a durable store can keep them across restarts; :class:`MemoryPolicyStore`
keeps them in memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from ..dnsquery import DnsTrouble
from .fetch import PolicyFetcher, PolicyFetchError
from .policy import StsMode, StsPolicy, parse_policy
from .record import lookup_record

if TYPE_CHECKING:
    import dns.resolver

__all__ = [
    "CachedPolicy",
    "MemoryPolicyStore",
    "MtaSts",
    "PolicyStore",
    "StsOutcome",
]

log = logging.getLogger(__name__)

#: Seconds before a failed fetch for the same record id is tried again.
RETRY_AFTER = 300.0
#: The longest a TXT answer saves looking the record up again, whatever its TTL.
MAX_RECORD_TTL = 300
#: The most domains whose missing record is remembered at once.
MAX_ABSENT = 10_000


class PolicyStore(Protocol):
    """Where cached policies are kept, as JSON text, one per domain.

    Implementations must be safe to call from several threads. ``put``
    replaces what was stored for the domain.
    """

    def get(self, domain: str) -> str | None:
        """The JSON stored for ``domain``, or None."""

    def put(self, domain: str, policy_json: str) -> None:
        """Store ``policy_json`` for ``domain``."""


class MemoryPolicyStore:
    """A :class:`PolicyStore` in a dict: forgotten when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, str] = {}

    def get(self, domain: str) -> str | None:
        with self._lock:
            return self._entries.get(domain)

    def put(self, domain: str, policy_json: str) -> None:
        with self._lock:
            self._entries[domain] = policy_json


@dataclass(frozen=True)
class CachedPolicy:
    """A policy as cached: with its record id and when it was fetched.

    Attributes:
        domain: the recipient domain (lower case).
        record_id: the TXT record's ``id`` when the policy was fetched.
        policy: the policy.
        fetched_at: when, in seconds since the epoch.
    """

    domain: str
    record_id: str
    policy: StsPolicy
    fetched_at: float

    @property
    def expires_at(self) -> float:
        """When the policy stops applying: ``max_age`` after its fetch."""
        return self.fetched_at + self.policy.max_age

    def to_json(self) -> str:
        """The JSON a :class:`PolicyStore` keeps (the policy as served)."""
        return json.dumps(
            {
                "domain": self.domain,
                "record_id": self.record_id,
                "fetched_at": self.fetched_at,
                "policy": self.policy.text(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> CachedPolicy:
        """Read what :meth:`to_json` wrote.

        Raises:
            ValueError: not such JSON, or the policy in it is invalid.
        """
        try:
            data = json.loads(text)
            return cls(
                str(data["domain"]),
                str(data["record_id"]),
                parse_policy(str(data["policy"])),
                float(data["fetched_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:  # PolicyError among them
            raise ValueError(f"not a cached MTA-STS policy: {exc}") from None


Source = Literal["fetched", "cached", "none", "unavailable"]


@dataclass(frozen=True)
class StsOutcome:
    """The MTA-STS policy that applies to a domain now, and where it came from.

    Attributes:
        domain: the recipient domain (lower case).
        source: ``fetched`` (just now), ``cached`` (kept from an earlier
            fetch), ``none`` (the domain publishes no policy and none is
            cached) or ``unavailable`` (a record is published, or the DNS could
            not say, but no policy could be had and none is cached: RFC 8461
            §5 says to deliver as without a policy).
        policy: the policy for ``fetched`` and ``cached``; else None.
        record_id: the id the policy was fetched under, or the one published.
        detail: why no fresh policy was had, when that happened (a DNS or
            fetch failure, even if a cached policy was used).
        result_type: the RFC 8460 result type of a failed fetch, for reports.
    """

    domain: str
    source: Source
    policy: StsPolicy | None = None
    record_id: str | None = None
    detail: str = ""
    result_type: str | None = None

    @property
    def enforced(self) -> bool:
        """Whether the policy is in ``enforce`` mode (RFC 8461 §5)."""
        return self.policy is not None and self.policy.mode is StsMode.ENFORCE


class MtaSts:
    """Finds the MTA-STS policy for recipient domains; safe for several threads.

    Args:
        resolver: asks the DNS for TXT records and the policy host (the
            resolver MX lookups use).
        store: keeps cached policies; a new :class:`MemoryPolicyStore` by default.
        fetch: fetches a domain's policy, raising :class:`PolicyFetchError`;
            a :class:`PolicyFetcher` on ``resolver`` by default.
        clock: seconds since the epoch (policies outlive restarts).
        retry_after: seconds before a failed fetch is retried for one record id.
    """

    def __init__(
        self,
        resolver: dns.resolver.Resolver,
        *,
        store: PolicyStore | None = None,
        fetch: Callable[[str], StsPolicy] | None = None,
        clock: Callable[[], float] = time.time,
        retry_after: float = RETRY_AFTER,
    ) -> None:
        self._resolver = resolver
        self._store: PolicyStore = store if store is not None else MemoryPolicyStore()
        self._fetch = fetch if fetch is not None else PolicyFetcher(resolver)
        self._clock = clock
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[str, float, PolicyFetchError]] = {}
        self._checked: dict[str, tuple[str, float]] = {}
        self._absent: dict[str, float] = {}
        self._inflight: dict[str, threading.Event] = {}

    def policy(self, domain: str, *, refresh: bool = False) -> StsOutcome:
        """Return the policy that applies to ``domain`` (an A-label name) now.

        ``refresh=True`` fetches the policy even if the cached one carries
        the published id, as RFC 8461 §5.1 asks before an enforce-mode failure
        becomes permanent; a failed refresh keeps the cached policy.
        """
        domain = domain.rstrip(".").lower()
        while True:
            with self._lock:
                waiting = self._inflight.get(domain)
                if waiting is None:
                    self._inflight[domain] = threading.Event()
                    break
            waiting.wait()  # one lookup per domain at a time
        try:
            return self._policy(domain, refresh)
        finally:
            with self._lock:
                self._inflight.pop(domain).set()

    def cached(self, domain: str) -> CachedPolicy | None:
        """The cached policy of ``domain``, unexpired, or None."""
        domain = domain.rstrip(".").lower()
        text = self._store.get(domain)
        if text is None:
            return None
        try:
            entry = CachedPolicy.from_json(text)
        except ValueError as exc:
            log.warning("ignoring the cached MTA-STS policy of %s: %s", domain, exc)
            return None
        if entry.expires_at <= self._clock():
            return None
        return entry

    def _policy(self, domain: str, refresh: bool) -> StsOutcome:
        now = self._clock()
        cached = self.cached(domain)
        if not refresh and cached is not None and self._recently_named(cached, now):
            return _from_cache(cached)
        if cached is None and self._absent.get(domain, 0.0) > now:
            return StsOutcome(domain, "none", detail="no record (answer cached)")
        try:
            answer = lookup_record(self._resolver, domain)
        except DnsTrouble as exc:
            return _fallback(domain, cached, str(exc), None)
        if answer.record is None:
            # RFC 8461 §5: no record, yet a cached policy still applies.
            if cached is not None:
                return _from_cache(cached, answer.detail)
            self._remember_absent(domain, now + min(answer.ttl, MAX_RECORD_TTL))
            return StsOutcome(domain, "none", detail=answer.detail)
        record_id = answer.record.id
        ttl = min(answer.ttl, MAX_RECORD_TTL)
        self._checked[domain] = (record_id, now + ttl)
        if cached is not None and cached.record_id == record_id and not refresh:
            return _from_cache(cached)
        return self._refetch(domain, record_id, cached, now)

    def _remember_absent(self, domain: str, until: float) -> None:
        """Keep a negative answer for its TTL, so that mail to the many domains
        without a policy costs one TXT lookup per TTL, not one per message."""
        if until <= self._clock():
            return
        with self._lock:
            if len(self._absent) >= MAX_ABSENT:
                now = self._clock()
                self._absent = {d: t for d, t in self._absent.items() if t > now}
                if len(self._absent) >= MAX_ABSENT:
                    self._absent.clear()
            self._absent[domain] = until

    def _recently_named(self, cached: CachedPolicy, now: float) -> bool:
        """Whether the record was looked up within its TTL and named ``cached``."""
        checked = self._checked.get(cached.domain)
        return (
            checked is not None and checked[0] == cached.record_id and checked[1] > now
        )

    def _refetch(
        self, domain: str, record_id: str, cached: CachedPolicy | None, now: float
    ) -> StsOutcome:
        failure = self._failures.get(domain)
        if failure is not None and failure[0] == record_id and failure[1] > now:
            error = failure[2]
            return _fallback(domain, cached, error.detail, error.result_type, record_id)
        try:
            policy = self._fetch(domain)
        except PolicyFetchError as exc:
            log.warning("cannot fetch the MTA-STS policy of %s: %s", domain, exc.detail)
            self._failures[domain] = (record_id, now + self._retry_after, exc)
            return _fallback(domain, cached, exc.detail, exc.result_type, record_id)
        self._failures.pop(domain, None)
        entry = CachedPolicy(domain, record_id, policy, now)
        self._store.put(domain, entry.to_json())
        return StsOutcome(domain, "fetched", policy, record_id)


def _from_cache(cached: CachedPolicy, detail: str = "") -> StsOutcome:
    return StsOutcome(cached.domain, "cached", cached.policy, cached.record_id, detail)


def _fallback(
    domain: str,
    cached: CachedPolicy | None,
    detail: str,
    result_type: str | None,
    record_id: str | None = None,
) -> StsOutcome:
    """The outcome when no fresh policy could be had: the cached one if any
    (RFC 8461 §5), else none available."""
    if cached is not None:
        return StsOutcome(
            domain, "cached", cached.policy, cached.record_id, detail, result_type
        )
    return StsOutcome(domain, "unavailable", None, record_id, detail, result_type)
