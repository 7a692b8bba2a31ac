"""The cached MTA-STS policies of
:class:`~mailstrom_py.storage.postgres.PostgresStorage`, in a table of their
own that every worker on the queue shares."""

from __future__ import annotations

from .. import policies_sql
from ..policies import PolicyCache, check_policy_entry
from .db import Database

__all__ = ["PostgresPolicies"]


class PostgresPolicies(PolicyCache):
    """:class:`~mailstrom_py.storage.policies.PolicyCache` on the database of
    ``_db``, which the storage sets; each call is one statement."""

    _db: Database

    def cached_policy(self, domain: str) -> str | None:
        return self._db.read(
            "read a cached MTA-STS policy",
            lambda conn: policies_sql.cached_policy(conn, "%s", domain),
        )

    def keep_policy(self, domain: str, policy_json: str) -> None:
        check_policy_entry(domain, policy_json)
        self._db.write(
            "cache an MTA-STS policy",
            lambda conn: policies_sql.keep_policy(conn, "%s", domain, policy_json),
        )
