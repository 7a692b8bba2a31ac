"""A throwaway PostgreSQL server on loopback, for tests and benchmarks.

``PgServer()`` runs ``initdb`` in a fresh temporary directory and starts
``postgres`` on 127.0.0.1 with a free port; its unix socket lives in the same
directory. Used as a context manager it is stopped and its directory removed
at exit::

    with PgServer() as server:
        dsn = server.create_database("example")
        ...  # psycopg.connect(dsn)

The cluster trusts every local connection (user ``postgres``, no password) and
keeps ``fsync`` on, so a committed transaction survives ``restart()`` with
``mode="immediate"`` (a crash-like stop that skips the shutdown checkpoint).

Fault helpers: ``backend_pids()``, ``terminate_backend()`` and
``pause_backend()``/``resume_backend()`` (SIGSTOP/SIGCONT), which act only on
backends of this server. PostgreSQL refuses to run as root, so when this
process is root the server runs as the ``postgres`` user.

The programs come from the newest ``/usr/lib/postgresql/<version>/bin`` (or
``$PG_BIN_DIR``); ``find_bin_dir()`` returns None when there is none. The
client side needs psycopg 3.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import loopback_family
from .scripted import free_port

__all__ = ["PgServer", "PgServerError", "find_bin_dir"]

SUPERUSER = "postgres"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

# Small and durable: tests rely on fsync for their crash-recovery checks.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "100",
    "shared_buffers": "16MB",
    "max_wal_size": "256MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
}


class PgServerError(RuntimeError):
    """The server could not be set up, started or stopped (the log's tail is in
    the message)."""


def find_bin_dir() -> Path | None:
    """The directory of the newest installed ``initdb`` and ``postgres``, or
    None; ``$PG_BIN_DIR`` takes precedence when set."""
    if override := os.environ.get("PG_BIN_DIR"):
        candidates = [Path(override)]
    else:
        versions = Path("/usr/lib/postgresql").glob("*/bin")
        candidates = sorted(versions, key=_version_key, reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    return None


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    parts = bin_dir.parent.name.split(".")
    return tuple(int(part) if part.isdigit() else -1 for part in parts)


class PgServer:
    """One PostgreSQL cluster in its own temporary directory.

    ``start()`` (or entering the context) creates the cluster on first use and
    waits until it accepts connections; ``stop()`` shuts it down and keeps the
    data; ``close()`` stops it and removes the directory. ``settings`` override
    ``DEFAULT_SETTINGS``; the port is picked free unless given.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        loopback_family(host)
        found = bin_dir or find_bin_dir()
        if found is None:
            raise PgServerError("no PostgreSQL programs in /usr/lib/postgresql")
        self.bin_dir = found
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._pick_port = port is None
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._paused: set[int] = set()

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> PgServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while the server runs, else None."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def data_dir(self) -> Path:
        return self._directory() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._directory() / "socket"

    @property
    def log_file(self) -> Path:
        return self._directory() / "server.log"

    def start(self) -> None:
        """Start the server (creating the cluster first if needed) and return
        once it accepts connections; a no-op while it runs."""
        if self.pid is not None:
            return
        if self.directory is None:
            self._init_cluster()
        for attempt in range(3):
            try:
                self._start_postmaster()
                return
            except PgServerError:
                # Another process may have taken the free port meanwhile.
                if not self._pick_port or attempt == 2 or not self._port_in_use():
                    raise
                self.port = free_port(self.host)

    def stop(self, mode: str = "fast") -> None:
        """Shut the server down and wait for it: ``"fast"`` (SIGINT: abort
        sessions, checkpoint) or ``"immediate"`` (SIGQUIT: no checkpoint, so
        the next start runs crash recovery from the write-ahead log)."""
        process = self._process
        if process is None:
            return
        signum = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        self._resume_paused()
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise PgServerError(f"server did not stop{self._log_tail()}") from None
        self._process = None

    def restart(self, mode: str = "fast") -> None:
        """``stop(mode)`` then ``start()``: same data directory, same port."""
        self.stop(mode)
        self._start_postmaster()

    def close(self) -> None:
        """Stop the server if it runs and remove its directory."""
        try:
            self.stop()
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None

    # -- connections -------------------------------------------------------------

    def dsn(self, dbname: str = "postgres", **params: Any) -> str:
        """A libpq connection string for ``dbname`` over TCP on loopback."""
        options = {"connect_timeout": 10, **params}
        return psycopg.conninfo.make_conninfo(
            host=self.host, port=self.port, user=SUPERUSER, dbname=dbname, **options
        )

    def socket_dsn(self, dbname: str = "postgres") -> str:
        """A connection string for ``dbname`` over the unix socket."""
        return psycopg.conninfo.make_conninfo(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname
        )

    def admin(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the ``postgres`` database."""
        return psycopg.connect(self.dsn(), autocommit=True)

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its DSN."""
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, ending the sessions still connected to it."""
        self._resume_paused()
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )

    # -- faults ------------------------------------------------------------------

    def backend_pids(self, dbname: str) -> list[int]:
        """The PIDs of the client backends connected to ``dbname``, oldest first
        (the connection this call makes is not among them)."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = %s AND backend_type = 'client backend'"
                " AND pid <> pg_backend_pid() ORDER BY backend_start, pid",
                (dbname,),
            ).fetchall()
        return [pid for (pid,) in rows]

    def terminate_backend(self, pid: int) -> bool:
        """End one backend as an administrator would (``pg_terminate_backend``);
        its client sees the connection fail. True if the signal was sent."""
        self._check_backend(pid)
        with self.admin() as conn:
            row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        return bool(row and row[0])

    def pause_backend(self, pid: int) -> None:
        """Freeze a backend with SIGSTOP: its socket stays open, nothing is
        answered, and its own ``statement_timeout`` cannot fire."""
        self._check_backend(pid)
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(pid)

    def resume_backend(self, pid: int) -> None:
        """Let a backend paused by ``pause_backend`` run again (SIGCONT)."""
        if pid not in self._paused:
            raise ValueError(f"backend {pid} was not paused by this server")
        self._paused.discard(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self, pid: int) -> Iterator[None]:
        """Keep a backend paused for the duration of the ``with`` block."""
        self.pause_backend(pid)
        try:
            yield
        finally:
            if pid in self._paused:
                self.resume_backend(pid)

    def _resume_paused(self) -> None:
        for pid in sorted(self._paused):
            self.resume_backend(pid)

    def _check_backend(self, pid: int) -> None:
        """Refuse any PID that is not a child process of this server."""
        postmaster = self.pid
        if postmaster is None or pid == postmaster or _parent_pid(pid) != postmaster:
            raise ValueError(f"{pid} is not a backend of this server")

    # -- internals ---------------------------------------------------------------

    def _directory(self) -> Path:
        if self.directory is None:
            raise PgServerError("the server has not been started")
        return self.directory

    def _init_cluster(self) -> None:
        # Not under pytest's base temp: it may be 0700 root, closed to postgres.
        parent = "/tmp" if os.geteuid() == 0 else None  # noqa: S108
        self.directory = Path(tempfile.mkdtemp(prefix="mailstrom-pg-", dir=parent))
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            account = _server_account()
            for path in (self.directory, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        initdb = [
            str(self.bin_dir / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            # The running server fsyncs its own writes; initdb's files are
            # still in the page cache, which a server crash does not lose.
            "--no-sync",
        ]
        result = subprocess.run(initdb, capture_output=True, check=False, **_run_as())
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise PgServerError(f"initdb failed:\n{output[-2000:]}")

    def _start_postmaster(self) -> None:
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        settings = {
            **self.settings,  # never the addresses: the server stays on loopback
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
        }
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, **_run_as()
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop("immediate")
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PgServerError(f"server exited at start{self._log_tail()}")
            try:
                with psycopg.connect(self.dsn(connect_timeout=2)):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise PgServerError(
                        f"server not ready after {START_TIMEOUT}s{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _port_in_use(self) -> bool:
        return "could not bind" in self._log_tail()

    def _log_tail(self) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, PgServerError):
            return ""
        return "; server log:\n" + text[-2000:]

    def __repr__(self) -> str:
        return f"<PgServer {self.host}:{self.port} pid={self.pid}>"


def _server_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PgServerError(
            "running as root, and there is no 'postgres' user to run the server as"
        ) from None


def _run_as() -> dict[str, Any]:
    """Popen arguments: as root, run as the postgres user (the server refuses
    root); always in the C locale and without the caller's PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
    env["LC_ALL"] = "C"
    options: dict[str, Any] = {"env": env}
    if os.geteuid() == 0:
        account = _server_account()
        options |= {
            "user": account.pw_uid,
            "group": account.pw_gid,
            "extra_groups": [],
            "cwd": "/",
        }
    return options


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces: read past its ")".
    return int(stat.rpartition(")")[2].split()[1])
