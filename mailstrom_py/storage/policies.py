"""Cached MTA-STS policies kept in storage, shared by every process that opens it.

RFC 8461 §5 counts on a sender's cache against downgrades: an attacker who
strips the ``_mta-sts`` record or blocks the policy fetch gains nothing while
a cached, unexpired policy applies. A cache held in one process's memory is
empty after each restart and on each new host. A storage that implements
:class:`PolicyCache` keeps the cache with the queue, so a worker started
anywhere on the queue knows every policy any of them fetched.

The storage keeps each policy as the JSON text it is given and never reads it:
what a policy means, and when it expires, is the MTA-STS code's business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["PolicyCache", "check_policy_entry"]

#: The longest JSON text kept for one domain. A policy file is at most 64 KiB
#: (RFC 8461 §3.2); its JSON form stays well within this.
MAX_POLICY_JSON = 256 * 1024


class PolicyCache(ABC):
    """MTA-STS policies cached in a storage, one per domain.

    Contract for every backend, besides :class:`~mailstrom_py.Storage`'s (thread
    and process safety, ``StorageError`` for a failure of the backend):

    * :meth:`cached_policy` returns the text last kept for the domain, by any
      process, or None.
    * :meth:`keep_policy` replaces whatever was kept for the domain, in one
      atomic step; it is durable once it returns.
    * Domains are kept as given: the caller folds them (lower case, no
      trailing dot).
    """

    @abstractmethod
    def cached_policy(self, domain: str) -> str | None:
        """The policy text kept for ``domain``, or None."""

    @abstractmethod
    def keep_policy(self, domain: str, policy_json: str) -> None:
        """Keep ``policy_json`` as ``domain``'s cached policy.

        Raises:
            ValueError: ``domain`` is empty or has a character other than
                the visible ASCII ones, or ``policy_json`` is longer than
                :data:`MAX_POLICY_JSON` or holds a NUL.
        """


def check_policy_entry(domain: str, policy_json: str) -> None:
    """Raise ``ValueError`` unless ``domain`` and ``policy_json`` may be kept
    (:meth:`PolicyCache.keep_policy`'s rules)."""
    if not domain or not all("!" <= c <= "~" for c in domain):
        raise ValueError(f"not a domain name to cache a policy for: {domain!r}")
    if len(policy_json) > MAX_POLICY_JSON or "\0" in policy_json:
        raise ValueError(f"not a policy text to cache for {domain}")
