"""A recording aiosmtpd server on loopback, with scripted replies.

``SmtpServer`` runs aiosmtpd's ``SMTP`` protocol on its own event loop in a
thread (it does not use aiosmtpd's ``Controller``: binding the listening socket
here makes port 0 race-free, and the shutdown below closes every client
transport so no ResourceWarning escapes). ``RecordingHandler`` decides the
replies and records what arrived::

    handler = RecordingHandler(max_recipients=2)
    with SmtpServer(handler=handler) as server:
        ...  # deliver to server.host, server.port
        [message] = handler.wait_for(1)
        assert "AUTH" not in handler.commands

Scripted replies, keyed on the recipient's local part (as in Postfix's and
aiosmtpd's own tests): ``t4...`` gets ``450 4.2.0``, ``p5...`` gets
``550 5.1.1``.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import (
    ALLOWED_BEFORE_STARTTLS,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)

from . import bind_socket

__all__ = [
    "Received",
    "RecordingHandler",
    "SessionRecord",
    "SmtpServer",
    "SmtpServerFactory",
]

TEMPFAIL_PREFIX = "t4"
PERMFAIL_PREFIX = "p5"
TEMPFAIL_REPLY = "450 4.2.0 mailbox busy"
PERMFAIL_REPLY = "550 5.1.1 no such user"
TOO_MANY_REPLY = "452 4.5.3 too many recipients"
STARTTLS_FIRST_REPLY = "530 5.7.0 Must issue a STARTTLS command first"

_SHUTDOWN_GRACE = 2.0


@dataclass(frozen=True)
class Received:
    """One message the server accepted (its final reply was 2xx)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    """The bytes after the DATA command, un-dot-stuffed (``original_content``)."""
    mail_options: tuple[str, ...]
    rcpt_options: tuple[str, ...]
    peer_host: str
    tls: bool
    auth_login: str | None


@dataclass
class SessionRecord:
    """What one SMTP session did, in order (one per TCP connection)."""

    peer_host: str
    peer_port: int
    commands: list[str] = field(default_factory=list)
    """Command lines as received; AUTH keeps only its mechanism."""
    tls: bool = False
    closed: bool = False

    @property
    def verbs(self) -> list[str]:
        """The command verbs, e.g. ``["EHLO", "STARTTLS", "EHLO", "MAIL"]``."""
        return [line.split(" ", 1)[0] for line in self.commands]


class RecordingHandler:
    """aiosmtpd handler: scripted replies plus a thread-safe record.

    Every reply setting is a plain attribute the test may change while the
    server runs (e.g. set ``mail_reply = None`` to let the next attempt pass).
    ``max_recipients`` counts the recipients accepted in the current
    transaction; refused ones do not count.
    """

    def __init__(
        self,
        *,
        max_recipients: int | None = None,
        mail_reply: str | None = None,
        data_reply: str | None = None,
        data_delay: float = 0.0,
        ehlo_reply: str | None = None,
        ehlo_exclude: Collection[str] = (),
    ) -> None:
        self.max_recipients = max_recipients
        self.mail_reply = mail_reply
        """Answer MAIL with this instead of 250 (a 2xx reply still records)."""
        self.data_reply = data_reply
        """Answer the final dot with this instead of 250."""
        self.data_delay = data_delay
        """Seconds to wait before answering the final dot."""
        self.ehlo_reply = ehlo_reply
        """Answer EHLO with this single line (e.g. ``"502 5.5.2 no"``), for HELO
        fallback tests."""
        self.ehlo_exclude = frozenset(word.upper() for word in ehlo_exclude)
        """EHLO keywords to leave out, e.g. ``{"8BITMIME", "SMTPUTF8"}``."""
        self._condition = threading.Condition()
        self._messages: list[Received] = []
        self._rejected: list[Received] = []
        self._sessions: list[SessionRecord] = []
        self._errors: list[BaseException] = []
        self._tls_failures = 0
        self._transactions = 0

    # -- reading the record (any thread) ------------------------------------

    @property
    def messages(self) -> list[Received]:
        """The accepted messages so far (a snapshot)."""
        with self._condition:
            return list(self._messages)

    @property
    def rejected(self) -> list[Received]:
        """Messages whose final dot was answered with a non-2xx reply."""
        with self._condition:
            return list(self._rejected)

    @property
    def sessions(self) -> list[SessionRecord]:
        """One record per SMTP session, in connection order (a snapshot)."""
        with self._condition:
            return list(self._sessions)

    @property
    def commands(self) -> list[str]:
        """Every command verb of every session, in order (a snapshot)."""
        with self._condition:
            return [verb for record in self._sessions for verb in record.verbs]

    @property
    def connections(self) -> int:
        """How many SMTP sessions were opened (TLS failures on 465 excluded)."""
        with self._condition:
            return len(self._sessions)

    @property
    def transactions(self) -> int:
        """How many times a final dot arrived, whatever the reply was."""
        with self._condition:
            return self._transactions

    @property
    def tls_failures(self) -> int:
        """How many STARTTLS handshakes failed (e.g. the client rejected the
        certificate)."""
        with self._condition:
            return self._tls_failures

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised while serving; tests expect none."""
        with self._condition:
            return list(self._errors)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        """Block until ``predicate()`` holds; re-checked on every server event.

        Raises TimeoutError after ``timeout`` seconds.
        """
        with self._condition:
            if not self._condition.wait_for(predicate, timeout):
                raise TimeoutError(f"condition not met within {timeout} s")

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """Block until ``count`` messages were accepted, then return them all."""
        with self._condition:
            if not self._condition.wait_for(
                lambda: len(self._messages) >= count, timeout
            ):
                raise TimeoutError(
                    f"{len(self._messages)} of {count} messages received "
                    f"within {timeout} s"
                )
            return list(self._messages)

    # -- called by the server (event loop thread) ---------------------------

    def session_opened(self, record: SessionRecord) -> None:
        with self._condition:
            self._sessions.append(record)
            self._condition.notify_all()

    def session_event(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def record_command(self, record: SessionRecord, line: str) -> None:
        with self._condition:
            record.commands.append(line)
            self._condition.notify_all()

    # -- aiosmtpd hooks -----------------------------------------------------

    async def handle_EHLO(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if self.ehlo_reply is not None:
            return [self.ehlo_reply]
        session.host_name = hostname
        lines = [response[4:] for response in responses]
        kept = [lines[0]]
        for line in lines[1:]:
            keyword, _, rest = line.partition(" ")
            if keyword.upper() in self.ehlo_exclude:
                continue
            if keyword.upper() == "AUTH" and not rest.strip():
                continue  # AUTH is disabled: aiosmtpd would print it empty
            kept.append(line)
        return [f"250-{line}" for line in kept[:-1]] + [f"250 {kept[-1]}"]

    async def handle_MAIL(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = self.mail_reply
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply or "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local_part = address.rpartition("@")[0].strip('"').lower()
        if local_part.startswith(TEMPFAIL_PREFIX):
            return TEMPFAIL_REPLY
        if local_part.startswith(PERMFAIL_PREFIX):
            return PERMFAIL_REPLY
        limit = self.max_recipients
        if limit is not None and len(envelope.rcpt_tos) >= limit:
            return TOO_MANY_REPLY
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        with self._condition:
            self._transactions += 1
            self._condition.notify_all()
        if self.data_delay > 0:
            await asyncio.sleep(self.data_delay)
        reply = self.data_reply or "250 2.0.0 OK queued"
        auth_data = session.auth_data
        login = (
            auth_data.login.decode("utf-8", "replace")
            if isinstance(auth_data, LoginPassword)
            else None
        )
        transport = server.transport
        peer = session.peer if isinstance(session.peer, tuple) else ("", 0)
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            mail_options=tuple(envelope.mail_options),
            rcpt_options=tuple(envelope.rcpt_options),
            peer_host=str(peer[0]),
            tls=transport is not None
            and transport.get_extra_info("ssl_object") is not None,
            auth_login=login,
        )
        with self._condition:
            if reply.startswith("2"):
                self._messages.append(received)
            else:
                self._rejected.append(received)
            self._condition.notify_all()
        return reply

    async def handle_exception(self, error: Exception) -> str:
        with self._condition:
            if isinstance(error, TLSSetupException):
                self._tls_failures += 1
            else:
                self._errors.append(error)
            self._condition.notify_all()
        return "451 4.3.0 test server error"


class _QuietSession(Session):
    """aiosmtpd's Session without the deprecation log line on every login."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP, recording each command before it is handled.

    STARTTLS-before-anything is enforced here rather than by aiosmtpd, so that
    commands it refuses are still recorded (aiosmtpd refuses them before any
    hook runs).
    """

    def __init__(
        self,
        handler: RecordingHandler,
        *,
        owner: SmtpServer,
        must_starttls: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner
        self._handler = handler
        self._must_starttls = must_starttls
        self._record: SessionRecord | None = None
        self._lost = False
        self.lost_future: asyncio.Future[None] = self.loop.create_future()
        self._smtp_methods = {
            verb: self._recorded(verb, method)
            for verb, method in self._smtp_methods.items()
        }

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    def _recorded(
        self, verb: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        @functools.wraps(method)
        async def run(arg: str | None) -> None:
            if self._record is not None:
                line = verb
                if arg:
                    line += " " + (arg.split()[0] if verb == "AUTH" else arg)
                self._handler.record_command(self._record, line)
            if (
                self._must_starttls
                and self._tls_protocol is None
                and verb not in ALLOWED_BEFORE_STARTTLS
            ):
                await self.push(STARTTLS_FIRST_REPLY)
                return
            await method(arg)

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        after_starttls = self._original_transport is not None
        super().connection_made(transport)
        if after_starttls:
            if self._record is not None:
                self._record.tls = True
                self._handler.session_event()
            return
        peer = transport.get_extra_info("peername") or ("", 0)
        self._record = SessionRecord(
            peer_host=str(peer[0]),
            peer_port=int(peer[1]),
            tls=transport.get_extra_info("ssl_object") is not None,
        )
        self._owner.session_started(self)
        self._handler.session_opened(self._record)

    def connection_lost(self, error: Exception | None) -> None:
        if self._lost:
            return  # aiosmtpd calls this itself after a failed STARTTLS
        self._lost = True
        super().connection_lost(error)
        self._owner.session_ended(self)
        if not self.lost_future.done():
            self.lost_future.set_result(None)
        if self._record is not None:
            self._record.closed = True
            self._handler.session_event()

    def abort(self) -> None:
        """Drop the connection now (used at server shutdown)."""
        transport = self._original_transport or self.transport
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()


class SmtpServer:
    """A recording aiosmtpd server on a loopback address, as a context manager.

    ``port=0`` picks a free port (read it from ``.port``); pass a port to put
    several servers on one port at 127.0.0.2, 127.0.0.3, ... ``auth_users``
    enables AUTH PLAIN and LOGIN (offered only under TLS unless
    ``auth_require_tls=False``); without it no AUTH is offered.
    ``data_size_limit=None`` means no limit and no SIZE keyword.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: RecordingHandler | None = None,
        starttls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls_context: ssl.SSLContext | None = None,
        auth_users: Mapping[str, str] | None = None,
        auth_require_tls: bool = True,
        enable_smtputf8: bool = True,
        data_size_limit: int | None = None,
        server_hostname: str = "mx.test",
        session_timeout: float = 60.0,
    ) -> None:
        if require_starttls and starttls_context is None:
            raise ValueError("require_starttls needs a starttls_context")
        self.host = host
        self.port = port
        self.handler = handler if handler is not None else RecordingHandler()
        self.starttls_context = starttls_context
        self.require_starttls = require_starttls
        self.implicit_tls_context = implicit_tls_context
        self.auth_users = dict(auth_users) if auth_users is not None else None
        self.auth_require_tls = auth_require_tls
        self.enable_smtputf8 = enable_smtputf8
        self.data_size_limit = data_size_limit
        self.server_hostname = server_hostname
        self.session_timeout = session_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._live: set[_RecordingSMTP] = set()
        self._startup_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<SmtpServer {self.host}:{self.port}>"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Bind, then serve in a background thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("server already running")
        sock = bind_socket(self.host, self.port)
        try:
            sock.listen(64)
            sock.setblocking(False)
            self.port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._startup_error = None
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run,
            args=(loop, sock, ready),
            name=f"smtpd-{self.host}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        ready.wait()  # _run sets it on every path
        self._raise_startup_error()

    def _raise_startup_error(self) -> None:
        error = self._startup_error
        if error is not None and self._thread is not None:
            self._thread.join()
            self._thread = None
            self._loop = None
            raise error

    def stop(self) -> None:
        """Drop every connection, close the listener and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the server thread --------------------------------------------------

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: Any,
        ready: threading.Event,
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(
                        self._protocol,
                        sock=sock,
                        ssl=self.implicit_tls_context,
                        ssl_handshake_timeout=(
                            5.0 if self.implicit_tls_context else None
                        ),
                    )
                )
            except BaseException as error:
                sock.close()
                self._startup_error = error
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def _protocol(self) -> _RecordingSMTP:
        authenticator = self._authenticate if self.auth_users is not None else None
        return _RecordingSMTP(
            self.handler,
            owner=self,
            must_starttls=self.require_starttls,
            loop=self._loop,
            hostname=self.server_hostname,
            tls_context=self.starttls_context,
            require_starttls=False,  # enforced (and recorded) by _RecordingSMTP
            # On port 465 the whole session is TLS, which aiosmtpd cannot see.
            auth_require_tls=(
                self.auth_require_tls and self.implicit_tls_context is None
            ),
            authenticator=authenticator,
            auth_exclude_mechanism=(
                () if self.auth_users is not None else ("LOGIN", "PLAIN")
            ),
            enable_SMTPUTF8=self.enable_smtputf8,
            data_size_limit=self.data_size_limit,
            timeout=self.session_timeout,
        )

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        users = self.auth_users or {}
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if login in users and users[login] == password:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def session_started(self, protocol: _RecordingSMTP) -> None:
        self._live.add(protocol)

    def session_ended(self, protocol: _RecordingSMTP) -> None:
        self._live.discard(protocol)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        live = list(self._live)
        for protocol in live:
            protocol.abort()
        pending = [protocol.lost_future for protocol in live]
        if pending:
            await asyncio.wait(pending, timeout=_SHUTDOWN_GRACE)
        await self._server.wait_closed()
        tasks = [
            task for task in asyncio.all_tasks() if task is not asyncio.current_task()
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._server = None


SmtpServerFactory = Callable[..., SmtpServer]
"""The type of the ``smtp_server`` fixture: ``smtp_server(**SmtpServer kwargs)``."""
