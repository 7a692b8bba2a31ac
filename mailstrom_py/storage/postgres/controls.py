"""The delivery controls of :class:`~mailstrom_py.storage.postgres.PostgresStorage`:
the suppression list and the suspended destinations, in tables of their own."""

from __future__ import annotations

from collections.abc import Sequence

from .. import controls_sql
from ..controls import Controls, Suppression, Suspension
from .db import Database

__all__ = ["PostgresControls"]


class PostgresControls(Controls):
    """:class:`~mailstrom_py.storage.controls.Controls` on the database of
    ``_db``, which the storage sets; each call is one statement or one
    transaction. Times are the caller's, whichever clock decides what is due."""

    _db: Database

    # -- controls -----------------------------------------------------------------

    def suppress(self, entries: Sequence[Suppression]) -> None:
        self._db.write(
            "suppress addresses",
            lambda conn: controls_sql.suppress(conn, "%s", entries),
        )

    def unsuppress(self, addresses: Sequence[str]) -> list[str]:
        return self._db.write(
            "unsuppress addresses",
            lambda conn: controls_sql.unsuppress(conn, "%s", addresses),
        )

    def suppressed(
        self, addresses: Sequence[str], now: float
    ) -> dict[str, Suppression]:
        if not addresses:
            return {}
        return self._db.read(
            "look up suppressed addresses",
            lambda conn: controls_sql.suppressed(conn, "%s", addresses, now),
        )

    def suppressions(self, now: float) -> list[Suppression]:
        return self._db.read(
            "list suppressed addresses",
            lambda conn: controls_sql.suppressions(conn, "%s", now),
        )

    def suspend(self, entry: Suspension) -> None:
        self._db.write(
            "suspend a destination",
            lambda conn: controls_sql.suspend(conn, "%s", entry),
        )

    def resume(self, destination: str) -> bool:
        return self._db.write(
            "resume a destination",
            lambda conn: controls_sql.resume(conn, "%s", destination),
        )

    def suspensions(self, now: float) -> list[Suspension]:
        return self._db.read(
            "list suspended destinations",
            lambda conn: controls_sql.suspensions(conn, "%s", now),
        )
