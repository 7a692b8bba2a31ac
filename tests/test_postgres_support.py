"""The PostgreSQL test server itself (support.postgres), checked with psycopg."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from support.postgres import PgServer  # noqa: E402


def one(conn: Any, query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_server_listens_on_loopback_only_with_fsync_on(
    postgres_server: PgServer, postgres_dsn: str
) -> None:
    """The server answers on 127.0.0.1, listens nowhere else, and syncs commits."""
    with psycopg.connect(postgres_dsn) as conn:
        assert one(conn, "SELECT host(inet_server_addr())") == "127.0.0.1"
        assert one(conn, "SHOW listen_addresses") == "127.0.0.1"
        assert one(conn, "SHOW fsync") == "on"
        assert one(conn, "SHOW synchronous_commit") == "on"
        assert int(one(conn, "SHOW max_connections")) >= 100


def test_each_test_gets_a_fresh_empty_database(
    postgres_database: str, postgres_dsn: str
) -> None:
    """``postgres_dsn`` names a new database of the test's own, with no tables."""
    with psycopg.connect(postgres_dsn) as conn:
        assert one(conn, "SELECT current_database()") == postgres_database
        assert postgres_database.startswith("test_")
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        assert one(conn, tables) == 0


def test_unix_socket_dsn_reaches_the_same_server(
    postgres_server: PgServer, postgres_database: str
) -> None:
    """The socket in the server's temporary directory serves the same databases."""
    with psycopg.connect(postgres_server.socket_dsn(postgres_database)) as conn:
        assert one(conn, "SELECT inet_server_addr()") is None
        assert one(conn, "SELECT current_database()") == postgres_database


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_keeps_committed_rows_and_the_port(
    postgres_server: PgServer, postgres_dsn: str, mode: str
) -> None:
    """A committed row is still there after a clean or crash-like restart."""
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    port, pid = postgres_server.port, postgres_server.pid
    postgres_server.restart(mode)
    assert postgres_server.port == port
    assert postgres_server.pid not in (None, pid)
    with psycopg.connect(postgres_dsn) as conn:
        assert one(conn, "SELECT n FROM kept") == 42


def test_terminate_backend_breaks_the_clients_connection(
    postgres_server: PgServer, postgres_database: str, postgres_dsn: str
) -> None:
    """``terminate_backend`` ends the session: the client's next statement fails."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        pid = conn.info.backend_pid
        assert postgres_server.backend_pids(postgres_database) == [pid]
        assert postgres_server.terminate_backend(pid)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert postgres_server.backend_pids(postgres_database) == []


def test_paused_backend_hangs_past_its_statement_timeout(
    postgres_server: PgServer, postgres_dsn: str
) -> None:
    """A SIGSTOPped backend never answers, so only a client-side deadline ends
    the wait; once resumed it answers."""
    result: list[Any] = []
    with psycopg.connect(
        postgres_dsn, autocommit=True, options="-c statement_timeout=200"
    ) as conn:

        def query() -> None:
            result.append(one(conn, "SELECT 1"))

        worker = threading.Thread(target=query, daemon=True)
        with postgres_server.paused(conn.info.backend_pid):
            worker.start()
            worker.join(1.5)
            assert worker.is_alive(), "a paused backend answered"
        worker.join(10)
    assert result == [1]


def test_pause_refuses_processes_that_are_not_its_backends(
    postgres_server: PgServer,
) -> None:
    """Only backends this server spawned can be paused: not the test, not the postmaster."""
    assert postgres_server.pid is not None
    for pid in (os.getpid(), postgres_server.pid):
        with pytest.raises(ValueError, match="not a backend"):
            postgres_server.pause_backend(pid)


def test_closing_a_server_stops_it_and_removes_its_directory(
    postgres_server: PgServer,
) -> None:
    """A server of its own, used as a context manager, leaves nothing behind."""
    with PgServer() as server:
        pid, directory = server.pid, server.directory
        assert pid is not None and directory is not None
        with psycopg.connect(server.dsn()) as conn:
            assert one(conn, "SELECT 1") == 1
    assert server.pid is None
    assert not Path(directory).exists()
    assert not Path(f"/proc/{pid}").exists()
