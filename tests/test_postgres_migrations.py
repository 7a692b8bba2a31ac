"""PostgreSQL schema upgrades on a queue in use (mailstrom_py.storage.postgres
.schema and .migration): the sender index of version 7 is built online, so
writes go on while it is built; a build that was interrupted is dropped and
built again; processes starting together migrate once, without error."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from mailstrom_py.errors import StorageError  # noqa: E402
from mailstrom_py.storage.postgres import PostgresStorage  # noqa: E402
from mailstrom_py.storage.postgres.migration import OnlineIndex  # noqa: E402
from mailstrom_py.storage.postgres.schema import (  # noqa: E402
    MIGRATION_LOCK,
    MIGRATIONS,
    SCHEMA_VERSION,
    migrate,
)

SCHEMA = "mailstrom"
INDEX = "messages_sender"
QUEUE = 5000

# A message row of version 6, number n of the queue.
INSERT_MESSAGE = """
    INSERT INTO messages (message_id, mail_from, smtputf8, eight_bit,
        require_tls, tls_optional, created_at, pending, due_at)
    SELECT 'm' || n || '@example.test', 'App' || n %% 7 || '@Example.test',
        false, false, false, false, n, 1, n
    FROM generate_series(%s::int, %s::int) AS n
"""


def connect(dsn: str, *, autocommit: bool = True) -> Any:
    """A session on the queue's schema."""
    conn = psycopg.connect(dsn, autocommit=autocommit)
    conn.execute(f"SET search_path = {SCHEMA}")
    if not autocommit:
        conn.commit()
    return conn


def queue_at_version_6(dsn: str) -> None:
    """The tables as version 6 left them, before the sender index, holding
    ``QUEUE`` messages."""
    with connect(dsn) as conn:
        migrate(conn, SCHEMA, MIGRATIONS[:6])
        conn.execute(INSERT_MESSAGE, (1, QUEUE))


def schema_version(dsn: str) -> int:
    with connect(dsn) as conn:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
    assert row is not None
    return int(row[0])


def sender_indexes(dsn: str) -> list[tuple[int, bool]]:
    """The oid and validity of each index of messages named like the sender
    index."""
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT i.indexrelid::int, i.indisvalid FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (SCHEMA, INDEX),
        ).fetchall()
    return [(int(oid), bool(valid)) for oid, valid in rows]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not: {what}"
        time.sleep(0.02)


def waiting_for_a_lock(dsn: str, pid: int) -> Callable[[], bool]:
    """Whether the backend ``pid`` is waiting for a lock (the build, for the
    open transaction)."""

    def check() -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
        return row is not None and row[0] == "Lock"

    return check


@contextmanager
def open_transaction_on_messages(dsn: str) -> Iterator[Any]:
    """A session that has updated a message and not committed (a worker
    recording an outcome, say); committed when the block ends."""
    with connect(dsn, autocommit=False) as conn:
        conn.execute("UPDATE messages SET held = true WHERE id = 1")
        yield conn
        conn.commit()


class Run(threading.Thread):
    """``body`` in a thread of its own, keeping what it raised."""

    def __init__(self, body: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._body = body
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._body()
        except BaseException as exc:
            self.error = exc


def test_writes_go_on_while_the_sender_index_waits_for_an_open_transaction(
    postgres_dsn: str,
) -> None:
    """Migrating a queue of version 6 to the last version while a transaction
    that wrote a message is open blocks no one: the build waits for that
    transaction, and meanwhile another session adds a message within a
    3-second lock timeout. Once the transaction commits the migration ends
    with the index valid and the last version stored."""
    queue_at_version_6(postgres_dsn)
    with connect(postgres_dsn) as migrator, connect(postgres_dsn) as writer:
        with open_transaction_on_messages(postgres_dsn):
            run = Run(lambda: migrate(migrator, SCHEMA))
            run.start()
            pid = migrator.info.backend_pid
            wait_for(waiting_for_a_lock(postgres_dsn, pid), "the migration waiting")

            writer.execute("SET lock_timeout = '3s'")
            writer.execute(INSERT_MESSAGE, (QUEUE + 1, QUEUE + 1))
            writer.execute("UPDATE messages SET pending = 0 WHERE id = 2")

            assert run.is_alive()
            assert waiting_for_a_lock(postgres_dsn, pid)()
        run.join(30)
    assert not run.is_alive()
    assert run.error is None
    assert [valid for _, valid in sender_indexes(postgres_dsn)] == [True]
    assert schema_version(postgres_dsn) == SCHEMA_VERSION


def test_a_build_cut_off_by_the_migration_timeout_is_dropped_and_built_again(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An open transaction holds the build past the migration timeout: opening
    the storage raises StorageError, leaving an invalid index and version 6.
    The next opening drops that index, builds it again (a new one, valid),
    and stores the last version."""
    queue_at_version_6(postgres_dsn)
    with (
        open_transaction_on_messages(postgres_dsn),
        pytest.raises(StorageError, match="statement timeout"),
    ):
        PostgresStorage(postgres_dsn, migration_timeout=1.0)
    [(leftover, valid)] = sender_indexes(postgres_dsn)
    assert not valid
    assert schema_version(postgres_dsn) == 6

    with caplog.at_level(logging.WARNING):
        PostgresStorage(postgres_dsn).close()
    [(rebuilt, valid)] = sender_indexes(postgres_dsn)
    assert valid and rebuilt != leftover
    assert schema_version(postgres_dsn) == SCHEMA_VERSION
    assert "invalid (an interrupted build)" in caplog.text


def test_a_migrating_process_killed_mid_build_leaves_the_next_one_to_build(
    postgres_dsn: str,
) -> None:
    """A migrating backend terminated while its build waits (its process
    killed) leaves an invalid index and takes the migration lock with it: the
    next migration gets the lock, drops the index and builds a valid one."""
    queue_at_version_6(postgres_dsn)
    with (
        connect(postgres_dsn) as migrator,
        open_transaction_on_messages(postgres_dsn) as other,
    ):
        run = Run(lambda: migrate(migrator, SCHEMA))
        run.start()
        pid = migrator.info.backend_pid
        wait_for(waiting_for_a_lock(postgres_dsn, pid), "the migration waiting")
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        run.join(30)
    assert isinstance(run.error, psycopg.OperationalError)
    [(leftover, valid)] = sender_indexes(postgres_dsn)
    assert not valid

    with connect(postgres_dsn) as conn:
        migrate(conn, SCHEMA)
    [(rebuilt, valid)] = sender_indexes(postgres_dsn)
    assert valid and rebuilt != leftover
    assert schema_version(postgres_dsn) == SCHEMA_VERSION


def test_processes_starting_together_build_the_index_once(postgres_dsn: str) -> None:
    """Four storages opened at once on a queue of version 6, while an open
    transaction holds the first build back (the others meanwhile wait for the
    migration lock), all open without error once it commits, with one valid
    index and the last version."""
    queue_at_version_6(postgres_dsn)
    opened: list[PostgresStorage] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        barrier.wait()
        opened.append(PostgresStorage(postgres_dsn, migration_timeout=30.0))

    def all_waiting() -> bool:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE application_name = 'mailstrom_py'),"
                " count(*) FILTER (WHERE wait_event = 'virtualxid')"
                " FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchone()
        return row == (4, 1)

    with open_transaction_on_messages(postgres_dsn):
        runs = [Run(open_one) for _ in range(4)]
        for run in runs:
            run.start()
        wait_for(all_waiting, "one build waiting, four processes migrating")
    for run in runs:
        run.join(60)
    for storage in opened:
        storage.close()
    assert [run.error for run in runs] == [None] * 4
    assert [valid for _, valid in sender_indexes(postgres_dsn)] == [True]
    assert schema_version(postgres_dsn) == SCHEMA_VERSION


def test_up_to_date_tables_open_while_another_process_holds_the_lock(
    postgres_dsn: str,
) -> None:
    """Tables at the last version open without the migration lock, so a
    long migration elsewhere (of another schema of the database, say) delays
    no process whose tables need none; tables that need one wait for the lock
    up to the migration timeout, then raise StorageError."""
    PostgresStorage(postgres_dsn).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        PostgresStorage(postgres_dsn, migration_timeout=1.0).close()
        with pytest.raises(StorageError, match="migration lock"):
            PostgresStorage(postgres_dsn, schema="other", migration_timeout=1.0)


def test_a_migration_may_outlast_the_statement_timeout(postgres_dsn: str) -> None:
    """Opening waits for another process's migration, and migrates, for up to
    the migration timeout, however short the statement timeout of the
    queue's work: a process started during a long upgrade opens once it is
    done, rather than fail after ten seconds."""
    with psycopg.connect(postgres_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        releaser = threading.Timer(
            2.5,
            lambda: holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,)),
        )
        releaser.start()
        started = time.monotonic()
        try:
            storage = PostgresStorage(
                postgres_dsn, statement_timeout=0.5, migration_timeout=30.0
            )
        finally:
            releaser.join()
        storage.close()
    assert time.monotonic() - started >= 2.0
    assert schema_version(postgres_dsn) == SCHEMA_VERSION


def test_migrating_needs_a_connection_in_autocommit(postgres_dsn: str) -> None:
    """An index built online runs outside any transaction: migrating on a
    connection that opens transactions of its own is refused, and creates
    nothing."""
    with connect(postgres_dsn, autocommit=False) as conn:
        with pytest.raises(StorageError, match="autocommit"):
            migrate(conn, SCHEMA)
        row = conn.execute("SELECT to_regclass('mailstrom.schema_version')").fetchone()
    assert row == (None,)


@pytest.mark.parametrize(
    "field", [{"name": "Messages_Sender"}, {"table": "messages; DROP TABLE x"}]
)
def test_an_online_index_names_lower_case_identifiers(field: dict[str, str]) -> None:
    """An OnlineIndex whose name or table is not a lower-case identifier
    raises ValueError."""
    fields = {"name": "messages_x", "table": "messages", "definition": "(id)"}
    with pytest.raises(ValueError, match="lower-case identifier"):
        OnlineIndex(**(fields | field))


def test_steps_after_an_online_index_run_each_in_a_transaction(
    postgres_dsn: str,
) -> None:
    """Steps of statements that come after an online index run once it is
    valid, each with the version it reaches: one that fails leaves the
    tables at the version before it, with the index and the steps before."""
    queue_at_version_6(postgres_dsn)
    later = (
        *MIGRATIONS[:7],
        "CREATE TABLE later (n int); INSERT INTO later VALUES (8)",
        "CREATE TABLE broken (n int); INSERT INTO broken VALUES ('not a number')",
    )
    with connect(postgres_dsn) as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            migrate(conn, SCHEMA, later)
        assert conn.execute("SELECT n FROM later").fetchall() == [(8,)]
        assert conn.execute("SELECT to_regclass('broken')").fetchone() == (None,)
    assert [valid for _, valid in sender_indexes(postgres_dsn)] == [True]
    assert schema_version(postgres_dsn) == 8
