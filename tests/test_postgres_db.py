"""PostgreSQL connections: timeouts, lost connections, deadlines and the schema's
migrations (mailstrom_py.storage.postgres.db and .schema), on a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from support.postgres import PgServer  # noqa: E402

from mailstrom_py.errors import StorageError  # noqa: E402
from mailstrom_py.storage import QueueFilter  # noqa: E402
from mailstrom_py.storage.postgres import PostgresStorage  # noqa: E402
from mailstrom_py.storage.postgres.db import Database, Timeouts  # noqa: E402
from mailstrom_py.storage.postgres.schema import (  # noqa: E402
    MIGRATIONS,
    SCHEMA_VERSION,
    migrate,
)
from mailstrom_py.testing import prepared_email  # noqa: E402


def open_database(
    dsn: str,
    *,
    connections: int = 1,
    connect: float = 2.0,
    statement: float = 0.5,
    migration: float = 30.0,
    schema: str = "mailstrom",
) -> Database:
    db = Database(
        dsn,
        min_connections=1,
        max_connections=connections,
        timeouts=Timeouts(connect, statement),
        schema=schema,
        name="mailstrom_py test",
    )
    db.open(lambda conn: migrate(conn, schema), migration)
    return db


@pytest.fixture
def db(postgres_dsn: str) -> Iterator[Database]:
    database = open_database(postgres_dsn)
    yield database
    database.close()


def backend_pid(db: Database) -> int:
    return int(db.read("find the backend", one("SELECT pg_backend_pid()")))


def one(query: str) -> Any:
    def body(conn: Any) -> Any:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]

    return body


def test_a_slow_statement_is_cancelled_by_the_server(db: Database) -> None:
    """A statement past statement_timeout ends in StorageError chained to the
    server's cancellation, and the connection stays in use."""
    pid = backend_pid(db)
    with pytest.raises(StorageError, match="statement timeout") as caught:
        db.read("sleep", one("SELECT pg_sleep(5)"))
    assert isinstance(caught.value.__cause__, psycopg.errors.QueryCanceled)
    assert backend_pid(db) == pid


def test_a_backend_that_stops_answering_is_cut_off_at_the_deadline(
    postgres_server: PgServer, db: Database
) -> None:
    """A frozen backend (SIGSTOP: even its own timeout cannot fire) makes the
    call raise StorageError at statement_timeout + 1 s, not hang; the next call
    runs on a new connection."""
    pid = backend_pid(db)
    with postgres_server.paused(pid):
        began = time.monotonic()
        with pytest.raises(StorageError) as caught:
            db.read("read while frozen", one("SELECT 1"))
        took = time.monotonic() - began
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    assert 1.4 <= took < 3.0
    assert backend_pid(db) != pid


def test_a_terminated_backend_is_replaced_without_an_error(
    postgres_server: PgServer, db: Database
) -> None:
    """After pg_terminate_backend on its idle connection, the next call runs on
    a new one and succeeds."""
    pid = backend_pid(db)
    assert postgres_server.terminate_backend(pid)
    time.sleep(0.1)
    assert backend_pid(db) != pid


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_calls_fail_while_the_server_is_down_and_work_once_it_is_back(
    postgres_server: PgServer, postgres_dsn: str, mode: str
) -> None:
    """A stopped server makes calls raise StorageError within the connect
    timeout; once it is back, calls succeed without reopening anything."""
    db = open_database(postgres_dsn, connections=3, connect=1.0)
    try:
        assert db.read("read", one("SELECT 1")) == 1
        postgres_server.stop(mode)
        began = time.monotonic()
        with pytest.raises(StorageError):
            db.read("read while down", one("SELECT 1"))
        assert time.monotonic() - began < 3.0
        postgres_server.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                assert db.read("read again", one("SELECT 2")) == 2
                break
            except StorageError:
                assert time.monotonic() < deadline, "no reconnection"
                time.sleep(0.2)
    finally:
        postgres_server.start()
        db.close()


def test_a_restart_between_calls_costs_no_error(
    postgres_server: PgServer, db: Database
) -> None:
    """Connections the restart broke are noticed before use and replaced."""
    pid = backend_pid(db)
    postgres_server.restart("fast")
    # The pool reconnects in the background with backoff; a call waits for it.
    assert backend_pid(db) != pid


def test_a_write_cut_off_while_committing_is_reported_as_unknown(
    postgres_server: PgServer, db: Database, postgres_dsn: str
) -> None:
    """When the server stops answering the commit, the error says whether the
    write was made is unknown; and indeed it is made once the backend resumes."""
    db.write("create", lambda conn: conn.execute("CREATE TABLE t (n int)"))
    pid = backend_pid(db)

    def insert_then_freeze(conn: Any) -> None:
        conn.execute("INSERT INTO t VALUES (1)")
        postgres_server.pause_backend(pid)  # the COMMIT finds it frozen

    try:
        with pytest.raises(StorageError, match="unknown"):
            db.write("insert", insert_then_freeze)
    finally:
        postgres_server.resume_backend(pid)
    with psycopg.connect(postgres_dsn) as conn:
        deadline = time.monotonic() + 5
        while conn.execute("SELECT count(*) FROM mailstrom.t").fetchone() != (1,):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_write_whose_connection_broke_before_commit_runs_again(
    postgres_server: PgServer, db: Database
) -> None:
    """A transaction whose backend is terminated mid-way left nothing, so it runs
    again on a new connection, and its effect is there once."""
    db.write("create", lambda conn: conn.execute("CREATE TABLE t (n int)"))
    runs = []

    def insert(conn: Any) -> None:
        runs.append(conn.info.backend_pid)
        conn.execute("INSERT INTO t VALUES (1)")
        if len(runs) == 1:
            postgres_server.terminate_backend(conn.info.backend_pid)
            conn.execute("SELECT pg_sleep(0.2)")

    db.write("insert", insert)
    assert len(runs) == 2 and runs[0] != runs[1]
    assert db.read("count", one("SELECT count(*) FROM t")) == 1


def test_every_psycopg_error_becomes_a_storage_error(db: Database) -> None:
    """A failing statement raises StorageError chained to psycopg's error."""
    with pytest.raises(StorageError, match="storage failed to select") as caught:
        db.read("select", one("SELECT * FROM no_such_table"))
    assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedTable)


def test_a_wrong_address_fails_opening_with_the_servers_words(
    postgres_server: PgServer,
) -> None:
    """Opening a database that does not exist raises StorageError saying so."""
    with pytest.raises(StorageError, match="does not exist"):
        open_database(postgres_server.dsn("no_such_database"))


def test_calls_after_close_raise(postgres_dsn: str) -> None:
    """A closed database refuses calls with StorageError; closing twice is fine."""
    db = open_database(postgres_dsn)
    db.close()
    db.close()
    with pytest.raises(StorageError, match="closed"):
        db.read("read", one("SELECT 1"))


# -- the schema ------------------------------------------------------------------


def schema_version(dsn: str, schema: str = "mailstrom") -> int:
    query = psycopg.sql.SQL("SELECT version FROM {}.schema_version").format(
        psycopg.sql.Identifier(schema)
    )
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_opening_creates_the_tables_in_their_own_schema(
    db: Database, postgres_dsn: str
) -> None:
    """The tables are in the schema named, at the current version."""
    tables = db.read(
        "list tables",
        lambda conn: sorted(
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'mailstrom'"
            )
        ),
    )
    assert tables == [
        "bodies",
        "events",
        "messages",
        "mta_sts_policies",
        "recipients",
        "schema_version",
        "suppressions",
        "suspensions",
        "tls_report_takes",
        "tls_session_counts",
    ]
    assert schema_version(postgres_dsn) == SCHEMA_VERSION


def test_an_older_schema_is_migrated_one_step_at_a_time(postgres_dsn: str) -> None:
    """Opening tables of version 1 with two migrations known runs the second."""
    steps = (
        "CREATE TABLE a (n int)",
        "CREATE TABLE b (n int); INSERT INTO b VALUES (7)",
    )
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("SET search_path = app")
        migrate(conn, "app", steps[:1])
        migrate(conn, "app", steps)
        migrate(conn, "app", steps)
        assert conn.execute("SELECT n FROM b").fetchall() == [(7,)]
    assert schema_version(postgres_dsn, "app") == 2


def test_a_newer_schema_is_refused(postgres_dsn: str, db: Database) -> None:
    """Tables written by a newer mailstrom_py raise StorageError when opened."""
    db.write(
        "pretend", lambda conn: conn.execute("UPDATE schema_version SET version = 99")
    )
    with pytest.raises(StorageError, match="newer"):
        open_database(postgres_dsn)


def test_processes_opening_at_once_migrate_once(postgres_dsn: str) -> None:
    """Eight openers racing on an empty database all succeed, with one schema."""
    errors: list[BaseException] = []
    opened: list[Database] = []
    barrier = threading.Barrier(8)

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(open_database(postgres_dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for database in opened:
        database.close()
    assert errors == []
    assert schema_version(postgres_dsn) == SCHEMA_VERSION


def test_a_role_that_may_not_create_tables_opens_a_migrated_database(
    postgres_server: PgServer, postgres_database: str, postgres_dsn: str, db: Database
) -> None:
    """Up-to-date tables need no right to create anything: an application role
    with only the rights to read and write rows opens them."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS app_rw")
        conn.execute("CREATE ROLE app_rw LOGIN")
        conn.execute(f"REVOKE CREATE ON DATABASE {postgres_database} FROM PUBLIC")
        conn.execute("GRANT USAGE ON SCHEMA mailstrom TO app_rw")
        conn.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mailstrom"
            " TO app_rw"
        )
    dsn = psycopg.conninfo.make_conninfo(postgres_dsn, user="app_rw")
    try:
        app = open_database(dsn)
        assert app.read("read", one("SELECT count(*) FROM messages")) == 0
        app.close()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("DROP OWNED BY app_rw")
            conn.execute("DROP ROLE app_rw")


def test_tables_from_before_the_event_journal_gain_it(postgres_dsn: str) -> None:
    """Tables of version 1 keep their queue when opened, and gain the event
    journal: events written with a message come back from it."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("SET search_path = old")
        migrate(conn, "old", MIGRATIONS[:1])
    storage = PostgresStorage(postgres_dsn, schema="old")
    try:
        storage.add(prepared_email(1, "a@example.test"), 10.0)
        storage.add_journaled([prepared_email(2, "b@example.test")], 11.0, ["e"])
        assert [e.payload for e in storage.take_events(5)] == ["e"]
        assert storage.count(QueueFilter()) == 2
    finally:
        storage.close()
    assert schema_version(postgres_dsn, "old") == SCHEMA_VERSION
