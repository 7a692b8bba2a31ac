"""Shared fixtures: loopback SMTP, scripted and DNS servers, ports and TLS.

Server fixtures are factories: call them with the server's keyword arguments
and get a started server, stopped at teardown. A server that recorded errors
(an exception in a handler) fails the test at teardown unless the factory was
called with ``allow_errors=True``.

Nothing here patches smtplib, socket or dns: the code under test talks to real
servers on 127.0.0.0/8 and ::1.

PostgreSQL: ``postgres_server`` is one real server for the session (see
``support.postgres``) and ``postgres_dsn`` a fresh database on it for each
test. Without the server programs or psycopg those tests are skipped, unless
``MAILSTROM_REQUIRE_POSTGRES=1`` makes that a failure (CI sets it once it has
installed PostgreSQL).
"""

from __future__ import annotations

import itertools
import os
import ssl
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import trustme
from hypothesis import settings
from support.dnsd import DnsServer, DnsServerFactory, Zone
from support.https import HttpsServer, HttpsServerFactory
from support.mxnet import MxNet, mx_net
from support.scripted import (
    Handler,
    ScriptedServer,
    ScriptedServerFactory,
    listen_backlog_full,
    refusing,
)
from support.scripted import (
    free_port as pick_free_port,
)
from support.smtpd import SmtpServer, SmtpServerFactory
from support.tls import client_context, server_context

if TYPE_CHECKING:
    from support.postgres import PgServer

# Property tests check what holds, not how fast: on a loaded machine one example
# can take longer than Hypothesis's default 200 ms deadline. Speed is measured
# in benchmarks/.
settings.register_profile("mailstrom", deadline=None)
settings.load_profile("mailstrom")

TLS_SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "mx.test", "relay.test")


class _ServerPool:
    """Servers started for one test, stopped and checked at teardown."""

    def __init__(self) -> None:
        self.stack = ExitStack()
        self.checked: list[Any] = []

    def close(self) -> None:
        self.stack.close()
        failures = [
            f"{server!r}: {_server_errors(server)!r}"
            for server in self.checked
            if _server_errors(server)
        ]
        if failures:
            pytest.fail("test servers recorded errors:\n" + "\n".join(failures))


def _server_errors(server: Any) -> list[BaseException]:
    if isinstance(server, SmtpServer):
        return server.handler.errors
    errors: list[BaseException] = server.errors
    return errors


@pytest.fixture
def _server_pool() -> Iterator[_ServerPool]:
    pool = _ServerPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test certificate authority (trusted by ``tls_client_context``)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def own_ca() -> trustme.CA:
    """A CA nobody trusts: its certificates verify only through DANE."""
    return trustme.CA(organization_name="DANE-only test CA")


@pytest.fixture(scope="session")
def leaf(own_ca: trustme.CA) -> trustme.LeafCert:
    """A certificate of ``own_ca`` for a name no exchanger has: only a DANE-EE
    record of it (RFC 7672 §3.1.1) makes it good."""
    return own_ca.issue_cert("somewhere-else.test")


@pytest.fixture
def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context for localhost, 127.0.0.1, ::1, mx.test and relay.test."""
    return server_context(ca, *TLS_SERVER_NAMES)


@pytest.fixture
def tls_client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts only the test CA."""
    return client_context(ca)


@pytest.fixture
def smtp_server(_server_pool: _ServerPool) -> SmtpServerFactory:
    """Start a recording aiosmtpd server: ``smtp_server(**SmtpServer kwargs)``."""

    def start(*, allow_errors: bool = False, **kwargs: Any) -> SmtpServer:
        server = _server_pool.stack.enter_context(SmtpServer(**kwargs))
        if not allow_errors:
            _server_pool.checked.append(server)
        return server

    return start


@pytest.fixture
def scripted_server(_server_pool: _ServerPool) -> ScriptedServerFactory:
    """Start a raw scripted server: ``scripted_server(handler, host=, port=)``."""

    def start(
        handler: Handler, *, allow_errors: bool = False, **kwargs: Any
    ) -> ScriptedServer:
        server = _server_pool.stack.enter_context(ScriptedServer(handler, **kwargs))
        if not allow_errors:
            _server_pool.checked.append(server)
        return server

    return start


@pytest.fixture
def dns_server(_server_pool: _ServerPool) -> DnsServerFactory:
    """Start a DNS server: ``dns_server(zone, host=, port=)``; see ``.resolver()``."""

    def start(
        zone: Zone | None = None, *, allow_errors: bool = False, **kwargs: Any
    ) -> DnsServer:
        server = _server_pool.stack.enter_context(DnsServer(zone, **kwargs))
        if not allow_errors:
            _server_pool.checked.append(server)
        return server

    return start


@pytest.fixture
def https_server(_server_pool: _ServerPool) -> HttpsServerFactory:
    """Start an HTTPS server of scripted replies: ``https_server(context, host=)``."""

    def start(
        context: ssl.SSLContext, *, allow_errors: bool = False, **kwargs: Any
    ) -> HttpsServer:
        server = _server_pool.stack.enter_context(HttpsServer(context, **kwargs))
        if not allow_errors:
            _server_pool.checked.append(server)
        return server

    return start


@pytest.fixture
def free_port() -> int:
    """A TCP port free on 127.0.0.1 (released: start something on it soon)."""
    return pick_free_port()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test."""
    with refusing() as port:
        yield port


@pytest.fixture
def backlog_full_address() -> Iterator[tuple[str, int]]:
    """``(host, port)`` on 127.0.0.1 where TCP connects time out."""
    with listen_backlog_full() as address:
        yield address


@pytest.fixture
def net(
    dns_server: DnsServerFactory,
    smtp_server: SmtpServerFactory,
    scripted_server: ScriptedServerFactory,
) -> Iterator[MxNet]:
    """A direct-delivery test network: one DNS zone, exchangers on 127.0.0.x;
    a test module may override it to add its zones (``def net(net)``)."""
    with mx_net(dns_server, smtp_server, scripted_server) as network:
        yield network


def _postgres_unavailable(reason: str) -> NoReturn:
    if os.environ.get("MAILSTROM_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """A PostgreSQL server on 127.0.0.1 for the whole session, removed at exit."""
    try:
        # psycopg is optional: only tests that use PostgreSQL need it.
        from support.postgres import (  # noqa: PLC0415
            PgServer,
            PgServerError,
            find_bin_dir,
        )
    except ImportError as exc:
        _postgres_unavailable(f"psycopg is not installed ({exc})")
    if find_bin_dir() is None:
        _postgres_unavailable("no PostgreSQL server programs (initdb, postgres)")
    server = PgServer()
    try:
        server.start()
    except PgServerError as exc:
        server.close()
        _postgres_unavailable(f"the PostgreSQL server did not start: {exc}")
    try:
        yield server
    finally:
        server.close()


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_database(postgres_server: PgServer) -> Iterator[str]:
    """The name of a fresh empty database on ``postgres_server``, dropped after
    the test (the server is restarted first if a test left it stopped)."""
    postgres_server.start()
    name = f"test_{next(_database_numbers)}"
    postgres_server.create_database(name)
    yield name
    postgres_server.start()
    postgres_server.drop_database(name)


@pytest.fixture
def postgres_dsn(postgres_server: PgServer, postgres_database: str) -> str:
    """A connection string for a fresh database of its own (``postgres_database``)."""
    return postgres_server.dsn(postgres_database)
