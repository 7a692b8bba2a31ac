"""The SMTP TLS report counts of
:class:`~mailstrom_py.storage.postgres.PostgresStorage`, in tables of their
own that every worker on the queue shares."""

from __future__ import annotations

from collections.abc import Sequence

from .. import tls_tally_sql
from ..tls_tally import (
    TlsReportTally,
    TlsSessionCount,
    check_day,
    check_session_counts,
)
from .db import Database

__all__ = ["PostgresTlsTally"]


class PostgresTlsTally(TlsReportTally):
    """:class:`~mailstrom_py.storage.tls_tally.TlsReportTally` on the database
    of ``_db``, which the storage sets; each call is one transaction. A take
    is ``DELETE ... RETURNING`` behind the upsert of the take's day, whose row
    lock admits one of several concurrent takes of a day."""

    _db: Database

    def tally_tls_sessions(self, rows: Sequence[TlsSessionCount]) -> None:
        check_session_counts(rows)
        if rows:
            self._db.write(
                "count TLS sessions",
                lambda conn: tls_tally_sql.tally_tls_sessions(conn, "%s", rows),
            )

    def take_tls_sessions(self, before_day: str) -> list[TlsSessionCount]:
        check_day(before_day)
        return self._db.write(
            "take TLS session counts",
            lambda conn: tls_tally_sql.take_tls_sessions(conn, "%s", before_day),
        )
