"""MTA-STS (RFC 8461): a domain's policy that mail to it must travel over
authenticated TLS, to the MX hosts it names.

- :mod:`.record`: the ``_mta-sts.<domain>`` TXT record (RFC 8461 §3.1).
- :mod:`.policy`: the policy, parsed strictly (§3.2), and MX matching (§4.1).
- :mod:`.fetch`: fetching the policy over verified HTTPS (§3.3).
- :mod:`.cache`: :class:`MtaSts`, which says which policy applies to a domain
  now, caching policies in a :class:`PolicyStore` (§5).
- :mod:`.store`: :class:`FilePolicyStore`, a store that outlives restarts.

dnspython is imported only when a lookup runs.
"""

from __future__ import annotations

from .cache import CachedPolicy, MemoryPolicyStore, MtaSts, PolicyStore, StsOutcome
from .fetch import (
    FETCH_TIMEOUT,
    MAX_POLICY_SIZE,
    PolicyFetcher,
    PolicyFetchError,
    fetch_policy,
    policy_host,
)
from .policy import (
    MAX_AGE_LIMIT,
    PolicyError,
    StsMode,
    StsPolicy,
    mx_matches,
    parse_policy,
)
from .record import (
    RecordAnswer,
    RecordError,
    StsRecord,
    choose_record,
    lookup_record,
    parse_record,
)
from .store import FilePolicyStore

__all__ = [
    "FETCH_TIMEOUT",
    "MAX_AGE_LIMIT",
    "MAX_POLICY_SIZE",
    "CachedPolicy",
    "FilePolicyStore",
    "MemoryPolicyStore",
    "MtaSts",
    "PolicyError",
    "PolicyFetchError",
    "PolicyFetcher",
    "PolicyStore",
    "RecordAnswer",
    "RecordError",
    "StsMode",
    "StsOutcome",
    "StsPolicy",
    "StsRecord",
    "choose_record",
    "fetch_policy",
    "lookup_record",
    "mx_matches",
    "parse_policy",
    "parse_record",
    "policy_host",
]
