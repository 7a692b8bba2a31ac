"""SQL that the SQL backends share: a :class:`~mailstrom_py.QueueFilter` as a
condition, written once for every backend and parameter style.

The condition reads the tables every SQL backend keeps:

* ``messages``, as ``m``: ``id`` (the row's key), ``message_id``,
  ``mail_from`` (the envelope sender), ``created_at``, ``held`` (true while
  on hold), ``pending`` (how many recipients are ``QUEUED`` or ``DEFERRED``);
* ``recipients``: ``message`` (``messages.id``), ``address``, ``domain`` (the
  address's domain with ASCII letters in lower case,
  :func:`~mailstrom_py.storage.query.fold_case`) and ``result`` (a
  :class:`~mailstrom_py.DeliveryResult` value).

What differs between databases, the parameter placeholder above all, is a
:class:`Dialect`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .query import QueueFilter

__all__ = ["SQLITE", "Dialect", "filter_condition"]


@dataclass(frozen=True)
class Dialect:
    """How one database writes what the others write differently.

    In the templates, ``{p}`` stands for a parameter and ``{column}`` for the
    column compared.

    Attributes:
        param: the placeholder of one parameter: ``"?"`` for sqlite3,
            ``"%s"`` for psycopg.
        one_of: a condition that ``{column}`` is one of the strings of a list
            passed as one parameter; e.g. ``"{column} = ANY({p})"``.
        pack_list: the parameter ``one_of`` takes for a list of strings.
        equal_nocase: a condition that ``{column}`` equals the parameter with
            ASCII letters compared without case.
    """

    param: str
    one_of: str
    pack_list: Callable[[list[str]], object]
    equal_nocase: str

    def render(self, template: str, column: str = "") -> str:
        """Return ``template`` with this dialect's placeholder and ``column``."""
        return template.format(p=self.param, column=column)


def _json_list(values: list[str]) -> object:
    return json.dumps(values)


#: SQLite, through the standard library's sqlite3 (JSON1 is built in).
SQLITE = Dialect(
    param="?",
    one_of="{column} IN (SELECT value FROM json_each({p}))",
    pack_list=_json_list,
    equal_nocase="{column} = {p} COLLATE NOCASE",
)

_Part = tuple[str, list[object]] | None


def filter_condition(
    where: QueueFilter, dialect: Dialect = SQLITE
) -> tuple[str, list[object]]:
    """Return an SQL condition on ``messages m`` that selects what ``where``
    selects, and its parameters in order.

    The empty filter gives a condition that always holds.
    """
    parts = [part for make in _PARTS if (part := make(where, dialect)) is not None]
    if not parts:
        return "1 = 1", []
    return " AND ".join(sql for sql, _ in parts), [p for _, ps in parts for p in ps]


def _ids(where: QueueFilter, dialect: Dialect) -> _Part:
    if not where.ids:
        return None
    return dialect.render(dialect.one_of, "m.message_id"), [
        dialect.pack_list(list(where.ids))
    ]


def _results(where: QueueFilter, dialect: Dialect) -> _Part:
    if not where.results:
        return None
    sql = (
        "EXISTS (SELECT 1 FROM recipients x WHERE x.message = m.id AND "
        + dialect.render(dialect.one_of, "x.result")
        + ")"
    )
    return sql, [dialect.pack_list([r.value for r in where.results])]


def _completed(where: QueueFilter, dialect: Dialect) -> _Part:
    if where.completed is None:
        return None
    return ("m.pending = 0" if where.completed else "m.pending > 0"), []


def _held(where: QueueFilter, dialect: Dialect) -> _Part:
    if where.held is None:
        return None
    return ("m.held" if where.held else "NOT m.held"), []


def _domain(where: QueueFilter, dialect: Dialect) -> _Part:
    if where.domain is None:
        return None
    sql = dialect.render("m.id IN (SELECT message FROM recipients WHERE domain = {p})")
    return sql, [where.domain]


def _recipient(where: QueueFilter, dialect: Dialect) -> _Part:
    if where.recipient is None:
        return None
    sql = (
        "m.id IN (SELECT message FROM recipients WHERE "
        + dialect.render(dialect.equal_nocase, "address")
        + ")"
    )
    return sql, [where.recipient]


def _sender(where: QueueFilter, dialect: Dialect) -> _Part:
    if where.sender is None:
        return None
    return dialect.render(dialect.equal_nocase, "m.mail_from"), [where.sender]


def _created(where: QueueFilter, dialect: Dialect) -> _Part:
    bounds = [
        (f"m.created_at < {dialect.param}", where.created_before),
        (f"m.created_at >= {dialect.param}", where.created_after),
    ]
    given = [(sql, value) for sql, value in bounds if value is not None]
    if not given:
        return None
    return " AND ".join(sql for sql, _ in given), [value for _, value in given]


_PARTS: Sequence[Callable[[QueueFilter, Dialect], _Part]] = (
    _ids,
    _results,
    _completed,
    _held,
    _domain,
    _recipient,
    _sender,
    _created,
)
