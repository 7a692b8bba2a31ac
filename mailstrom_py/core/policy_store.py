"""MTA-STS policies cached in the mailer's storage: the
:class:`~mailstrom_py.delivery.routing.mta_sts.PolicyStore` a
:class:`~mailstrom_py.Mailstrom` gives direct delivery when its storage is a
:class:`~mailstrom_py.storage.policies.PolicyCache` (SQLite, PostgreSQL).

Every worker on the storage then starts with the policies any of them fetched,
so neither a restart nor a new host opens a window for a downgrade (RFC 8461
§5). The MTA-STS code reads its store at each delivery to a domain, so this
process keeps a copy in front of the storage: a policy read or kept once is
served from memory; a domain found without one is looked up in storage again
after :data:`RECHECK_ABSENT` seconds, in case another process fetched it since.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..errors import StorageError
from ..storage.policies import PolicyCache

__all__ = ["RECHECK_ABSENT", "StoredPolicies"]

log = logging.getLogger(__name__)

#: Seconds a domain found without a policy in storage is taken to have none.
RECHECK_ABSENT = 300.0
#: The most domains known to have no policy in storage; beyond, they are forgotten.
MAX_ABSENT = 10_000


class StoredPolicies:
    """A policy store on ``cache`` with this process's copy in front; safe for
    several threads.

    A storage that fails is logged and passed over, never raised into a
    delivery: a read then finds the copy in memory (or nothing), and a policy
    that could not be kept in storage is still kept in memory.

    Args:
        cache: the storage keeping the policies.
        clock: monotonic seconds, for :data:`RECHECK_ABSENT`.
    """

    def __init__(
        self, cache: PolicyCache, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cache = cache
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: dict[str, str] = {}
        self._absent: dict[str, float] = {}

    def get(self, domain: str) -> str | None:
        """The policy text of ``domain``: the copy in memory, else storage's."""
        now = self._clock()
        with self._lock:
            text = self._kept.get(domain)
            if text is not None or self._absent.get(domain, -1.0) > now:
                return text
        try:
            text = self._cache.cached_policy(domain)
        except StorageError as exc:
            log.warning("cannot read the cached MTA-STS policy of %s: %s", domain, exc)
            return None
        with self._lock:
            if text is None:
                if len(self._absent) >= MAX_ABSENT:
                    self._absent.clear()
                self._absent[domain] = now + RECHECK_ABSENT
            else:
                self._kept.setdefault(domain, text)
            return self._kept.get(domain, text)

    def put(self, domain: str, policy_json: str) -> None:
        """Keep ``policy_json`` as ``domain``'s policy, in memory and in storage."""
        with self._lock:
            self._kept[domain] = policy_json
            self._absent.pop(domain, None)
        try:
            self._cache.keep_policy(domain, policy_json)
        except (StorageError, ValueError) as exc:
            log.warning("cannot keep the MTA-STS policy of %s: %s", domain, exc)
