"""The SQL of :class:`~mailstrom_py.storage.policies.PolicyCache`, written once
for SQLite and PostgreSQL, on the ``mta_sts_policies`` table of each backend's
migration; ``mark`` is the driver's parameter placeholder."""

from __future__ import annotations

from .controls_sql import Executes

__all__ = ["cached_policy", "keep_policy"]


def cached_policy(conn: Executes, mark: str, domain: str) -> str | None:
    """The policy kept for ``domain``, or None."""
    row = conn.execute(
        f"SELECT policy FROM mta_sts_policies WHERE domain = {mark}", [domain]
    ).fetchone()
    return None if row is None else str(row[0])


def keep_policy(conn: Executes, mark: str, domain: str, policy_json: str) -> None:
    """Upsert ``domain``'s policy (checked by the caller with
    :func:`~mailstrom_py.storage.policies.check_policy_entry`)."""
    conn.execute(
        "INSERT INTO mta_sts_policies (domain, policy)"
        f" VALUES ({mark}, {mark}) ON CONFLICT (domain) DO UPDATE"
        " SET policy = excluded.policy",
        [domain, policy_json],
    )
