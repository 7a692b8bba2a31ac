"""The SQL of :class:`~mailstrom_py.storage.controls.Controls`, written once for
SQLite and PostgreSQL.

Each function is the body of one call, run on the connection (and in the
transaction) it is given; ``mark`` is the driver's parameter placeholder (``?``
for sqlite3, ``%s`` for psycopg). The tables are those of each backend's
controls migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .controls import Suppression, Suspension, fold_address

__all__ = [
    "Executes",
    "resume",
    "suppress",
    "suppressed",
    "suppressions",
    "suspend",
    "suspensions",
    "unsuppress",
]

# How many addresses one lookup statement names at most.
_CHUNK = 500


class Executes(Protocol):
    """A DB-API connection: what these functions use of one."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


def _rows(conn: Executes, query: str, params: Sequence[object]) -> list[Any]:
    return list(conn.execute(query, list(params)).fetchall())


def suppress(conn: Executes, mark: str, entries: Sequence[Suppression]) -> None:
    """Upsert ``entries``, and prune entries that ended before the first began."""
    if not entries:
        return
    conn.execute(
        f"DELETE FROM suppressions WHERE until <= {mark}",
        [min(e.since for e in entries)],
    )
    query = (
        "INSERT INTO suppressions (address, reason, since, until)"
        f" VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (address) DO UPDATE"
        " SET reason = excluded.reason, since = excluded.since, until = excluded.until"
    )
    for e in entries:
        conn.execute(query, [e.address, e.reason, float(e.since), float(e.until)])


def unsuppress(conn: Executes, mark: str, addresses: Sequence[str]) -> list[str]:
    """Delete the entries of ``addresses``; return those deleted, folded."""
    removed = []
    for address in dict.fromkeys(fold_address(a) for a in addresses):
        if _rows(
            conn,
            f"DELETE FROM suppressions WHERE address = {mark} RETURNING address",
            [address],
        ):
            removed.append(address)
    return removed


def suppressed(
    conn: Executes, mark: str, addresses: Sequence[str], now: float
) -> dict[str, Suppression]:
    """The entries in force at ``now`` among ``addresses``, keyed as given."""
    folded = list(dict.fromkeys(fold_address(a) for a in addresses))
    found: dict[str, Suppression] = {}
    for start in range(0, len(folded), _CHUNK):
        chunk = folded[start : start + _CHUNK]
        marks = ", ".join([mark] * len(chunk))
        for row in _rows(
            conn,
            "SELECT address, reason, since, until FROM suppressions"
            f" WHERE address IN ({marks}) AND until > {mark}",
            [*chunk, float(now)],
        ):
            entry = _suppression(row)
            found[entry.address] = entry
    return {a: found[f] for a in addresses if (f := fold_address(a)) in found}


def suppressions(conn: Executes, mark: str, now: float) -> list[Suppression]:
    """Every entry in force at ``now``, oldest first."""
    rows = _rows(
        conn,
        "SELECT address, reason, since, until FROM suppressions"
        f" WHERE until > {mark} ORDER BY since, address",
        [float(now)],
    )
    return [_suppression(row) for row in rows]


def suspend(conn: Executes, mark: str, entry: Suspension) -> None:
    """Upsert ``entry``, and prune suspensions that ended before it began."""
    conn.execute(f"DELETE FROM suspensions WHERE until <= {mark}", [entry.since])
    conn.execute(
        "INSERT INTO suspensions (destination, reason, since, until)"
        f" VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (destination)"
        " DO UPDATE SET reason = excluded.reason, since = excluded.since,"
        " until = excluded.until",
        [entry.destination, entry.reason, float(entry.since), float(entry.until)],
    )


def resume(conn: Executes, mark: str, destination: str) -> bool:
    """Delete the suspension of ``destination``; whether there was one."""
    return bool(
        _rows(
            conn,
            f"DELETE FROM suspensions WHERE destination = {mark} RETURNING destination",
            [destination],
        )
    )


def suspensions(conn: Executes, mark: str, now: float) -> list[Suspension]:
    """Every suspension in force at ``now``, by destination."""
    rows = _rows(
        conn,
        "SELECT destination, reason, since, until FROM suspensions"
        f" WHERE until > {mark} ORDER BY destination",
        [float(now)],
    )
    return [Suspension(str(d), str(r), float(s), float(u)) for (d, r, s, u) in rows]


def _suppression(row: Sequence[object]) -> Suppression:
    address, reason, since, until = row
    return Suppression(str(address), str(reason), float(since), float(until))  # type: ignore[arg-type]
