"""The SQL of :class:`~mailstrom_py.storage.tls_tally.TlsReportTally`, written
once for SQLite and PostgreSQL, on the ``tls_session_counts`` and
``tls_report_takes`` tables of each backend's migration; ``mark`` is the
driver's parameter placeholder.

A count's row is keyed by its report domain, day and a digest of its policy
and failure texts: a policy may be longer than an index entry may be.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .controls_sql import Executes
from .tls_tally import TlsSessionCount

__all__ = ["take_tls_sessions", "tally_tls_sessions"]


def tally_tls_sessions(
    conn: Executes, mark: str, rows: Sequence[TlsSessionCount]
) -> None:
    """Upsert ``rows`` (checked by the caller with
    :func:`~mailstrom_py.storage.tls_tally.check_session_counts`), adding to
    the counts kept. Rows go in the order of their keys, so that transactions
    of several processes that touch the same rows lock them in one order."""
    query = (
        "INSERT INTO tls_session_counts"
        " (report_domain, day, digest, policy, failure, count)"
        f" VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})"
        " ON CONFLICT (report_domain, day, digest) DO UPDATE"
        " SET count = tls_session_counts.count + excluded.count"
    )
    keyed = sorted(
        (((row.report_domain, row.day, _digest(row)), row) for row in rows),
        key=lambda pair: pair[0],
    )
    for (domain, day, digest), row in keyed:
        conn.execute(query, [domain, day, digest, row.policy, row.failure, row.count])


def take_tls_sessions(
    conn: Executes, mark: str, before_day: str
) -> list[TlsSessionCount]:
    """Close the days before ``before_day`` (checked by the caller), unless
    they are closed already, and delete and return their counts; run in one
    transaction. The one row of ``tls_report_takes`` holds the day of the
    last take: its upsert admits one take per day among concurrent ones."""
    admitted = conn.execute(
        "INSERT INTO tls_report_takes (id, before_day)"
        f" VALUES (1, {mark}) ON CONFLICT (id) DO UPDATE"
        " SET before_day = excluded.before_day"
        " WHERE tls_report_takes.before_day < excluded.before_day"
        " RETURNING before_day",
        [before_day],
    ).fetchall()
    if not admitted:
        return []
    taken = conn.execute(
        f"DELETE FROM tls_session_counts WHERE day < {mark}"
        " RETURNING report_domain, day, policy, failure, count",
        [before_day],
    ).fetchall()
    return [
        TlsSessionCount(str(d), str(day), str(p), str(f), int(n))
        for d, day, p, f, n in sorted(taken)
    ]


def _digest(row: TlsSessionCount) -> str:
    # Neither text holds a NUL, so the pair is read back unambiguously.
    data = f"{row.policy}\0{row.failure}".encode()
    return hashlib.sha256(data).hexdigest()
