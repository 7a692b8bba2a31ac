"""The queue filter's SQL, written once for every SQL backend (storage/sql.py).

That the SQL selects what QueueFilter.matches() selects is the storage
contract's FindContract, run against SqliteStorage; these tests cover what the
contract cannot see: the parameter style of another database.
"""

from __future__ import annotations

import pytest

from mailstrom_py import DeliveryResult, QueueFilter
from mailstrom_py.storage.sql import SQLITE, Dialect, filter_condition

PSYCOPG = Dialect(
    param="%s",
    one_of="{column} = ANY({p})",
    pack_list=list,
    equal_nocase="lower({column}) = lower({p})",
)

EVERY_CRITERION = QueueFilter(
    ids=("m1@example.test", "m2@example.test"),
    results=(DeliveryResult.DEFERRED,),
    completed=False,
    held=False,
    domain="example.test",
    recipient="a@example.test",
    sender="app@example.test",
    created_before=50.0,
    created_after=10.0,
)


def test_the_empty_filter_is_a_condition_that_always_holds() -> None:
    """QueueFilter() selects every message: a true condition, no parameters."""
    assert filter_condition(QueueFilter()) == ("1 = 1", [])


@pytest.mark.parametrize("dialect", [SQLITE, PSYCOPG], ids=["sqlite", "psycopg"])
def test_each_parameter_has_the_dialects_placeholder(dialect: Dialect) -> None:
    """One placeholder of the dialect's own per parameter, and none of another's."""
    sql, params = filter_condition(EVERY_CRITERION, dialect)
    other = "%s" if dialect.param == "?" else "?"
    assert sql.count(dialect.param) == len(params) == 7
    assert other not in sql


def test_lists_are_packed_as_the_dialect_takes_them() -> None:
    """Ids and results go as one parameter each: JSON for SQLite, a list for
    psycopg; the other parameters in the order of their placeholders."""
    _, sqlite_params = filter_condition(EVERY_CRITERION, SQLITE)
    _, psycopg_params = filter_condition(EVERY_CRITERION, PSYCOPG)
    assert sqlite_params[:2] == [
        '["m1@example.test", "m2@example.test"]',
        '["deferred"]',
    ]
    assert psycopg_params == [
        ["m1@example.test", "m2@example.test"],
        ["deferred"],
        "example.test",
        "a@example.test",
        "app@example.test",
        50.0,
        10.0,
    ]
