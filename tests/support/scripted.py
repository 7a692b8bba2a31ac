"""A raw socket SMTP server for the protocol faults aiosmtpd cannot produce.

``ScriptedServer(handler)`` accepts on a loopback address and runs
``handler(conversation)`` for each connection in a thread of its own. A
handler is plain blocking code over a ``Conversation``::

    def handler(conv: Conversation) -> None:
        conv.send("220 scripted.test ESMTP")
        conv.expect("EHLO")
        conv.send("421 4.3.2 going down")

    with ScriptedServer(handler) as server:
        ...  # connect to server.host, server.port
    assert server.errors == []

Ready-made handlers: ``greeting``, ``tarpit``, ``normal`` (a well-behaved
server whose replies hooks can override) and the faults built on it.

This module also holds the port helpers: ``free_port``, ``refusing`` (nothing
listens: connection refused) and ``listen_backlog_full`` (connects time out).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from . import bind_socket, loopback_family

__all__ = [
    "ClientClosed",
    "Conversation",
    "DotHook",
    "Handler",
    "Hook",
    "ScriptedServer",
    "ScriptedServerFactory",
    "dripping",
    "drop_after_dot",
    "drop_mid_data",
    "free_port",
    "greeting",
    "listen_backlog_full",
    "long_reply_line",
    "malformed_reply",
    "normal",
    "refusing",
    "reply_421_after_rcpts",
    "silent_after_dot",
    "tarpit",
]

HOSTNAME = "scripted.test"
MAX_LINE = 1 << 20
"""Longest line a conversation buffers before giving up (1 MiB)."""


class ClientClosed(ConnectionError):
    """The client closed the connection while the script expected more."""


class Conversation:
    """One accepted connection, read and written line by line.

    Reads take a timeout (seconds) and raise ``TimeoutError`` when it passes;
    a reset by the client reads as end of stream (see ``client_reset``).
    Every line read with ``readline`` is kept in ``lines`` (a record of the
    commands); message bodies read with ``read_data`` go to ``bodies``.
    """

    def __init__(
        self, sock: socket.socket, peer: tuple[Any, ...] | None = None
    ) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._lock = threading.Lock()
        peer = peer if peer is not None else sock.getpeername()
        self.peer_host: str = peer[0]
        self.peer_port: int = peer[1]
        self.lines: list[str] = []
        self.bodies: list[bytes] = []
        self.tls = False
        self.tls_error: BaseException | None = None
        self.closed = False
        self.client_closed = False
        """True once a read saw the client's end of stream (or a reset)."""
        self.client_reset = False
        """True if that end of stream was a reset (reads treat it as EOF)."""

    @property
    def verbs(self) -> list[str]:
        """The first word of each line read, upper-cased."""
        return [_verb(line) for line in list(self.lines)]

    # -- writing ------------------------------------------------------------

    def send(self, line: str) -> None:
        """Send ``line`` plus CRLF (embed CRLFs for multi-line replies)."""
        self.send_raw(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        """Send ``data`` exactly as given."""
        self._sock.settimeout(10)
        self._sock.sendall(data)

    def send_last(self, line: str) -> None:
        """Send ``line`` plus CRLF and close: both leave in one segment
        (TCP_CORK), so the client cannot read the line before the close."""
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        self.send(line)
        self.close()

    def drip(self, line: str, interval: float = 0.3) -> bool:
        """Send ``line`` plus CRLF one byte every ``interval`` seconds, as a
        tarpit does; see ``drip_raw``."""
        return self.drip_raw(
            line.encode("utf-8", "surrogateescape") + b"\r\n", interval
        )

    def drip_raw(self, data: bytes, interval: float = 0.3) -> bool:
        """Send ``data`` one byte every ``interval`` seconds, keeping what the
        client sends meanwhile; False as soon as the client has gone."""
        for byte in data:
            try:
                self.send_raw(bytes([byte]))
            except OSError:
                return False
            if not self._wait_unless_closed(interval):
                return False
        return True

    # -- reading ------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read more into the buffer; False at end of stream."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the client")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            chunk = b""
        except ConnectionResetError:
            self.client_reset = True
            chunk = b""
        except TimeoutError:
            raise TimeoutError("timed out waiting for the client") from None
        if not chunk:
            self.client_closed = True
            return False
        self._buffer += chunk
        return True

    def _wait_unless_closed(self, seconds: float) -> bool:
        """Wait ``seconds``, buffering what the client sends; False at its end
        of stream."""
        deadline = time.monotonic() + seconds
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            return True
        return False

    def readline_bytes(self, timeout: float = 10) -> bytes:
        """One line up to and including LF, as bytes; ``b""`` at end of stream.

        A last line without LF before the end of stream is returned as is.
        """
        deadline = time.monotonic() + timeout
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_LINE:
                raise ValueError("client line longer than 1 MiB")
            if not self._fill(deadline):
                line = bytes(self._buffer)
                self._buffer.clear()
                return line

    def readline(self, timeout: float = 10) -> str:
        """One line including its CRLF, decoded; ``""`` at end of stream."""
        line = self.readline_bytes(timeout).decode("utf-8", "surrogateescape")
        if line:
            self.lines.append(line.rstrip("\r\n"))
        return line

    def expect(self, verb: str, timeout: float = 10) -> str:
        """Read one command, check its verb (any case) and return it sans CRLF.

        Raises ``ClientClosed`` at end of stream and ``AssertionError`` for a
        different command.
        """
        line = self.readline(timeout)
        if not line:
            raise ClientClosed(f"client closed the connection; expected {verb}")
        command = line.rstrip("\r\n")
        if _verb(command) != verb.upper():
            raise AssertionError(f"expected {verb}, got {command!r}")
        return command

    def read_data(self, timeout: float = 10) -> bytes:
        """Read a message up to the ``.`` line; return it un-dot-stuffed.

        The body keeps its line endings byte for byte (bare LFs included), as
        aiosmtpd's ``original_content`` does. Raises ``ClientClosed`` at end of
        stream before the dot.
        """
        deadline = time.monotonic() + timeout
        body = bytearray()
        while True:
            line = self.readline_bytes(max(deadline - time.monotonic(), 0.0))
            if not line.endswith(b"\n"):
                raise ClientClosed("client closed the connection inside DATA")
            if line == b".\r\n":
                self.bodies.append(bytes(body))
                return bytes(body)
            body += line[1:] if line.startswith(b".") else line

    def read_bytes(self, count: int, timeout: float = 10) -> bytes:
        """Read exactly ``count`` bytes, or fewer if the client closes."""
        deadline = time.monotonic() + timeout
        while len(self._buffer) < count and self._fill(deadline):
            pass
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def sleep_until_closed(self, timeout: float = 30) -> bool:
        """Read and discard until the client goes away; False on timeout.

        Blocks in ``recv`` (no polling), so a tarpit costs nothing; the server
        also wakes it when it stops.
        """
        deadline = time.monotonic() + timeout
        self._buffer.clear()
        try:
            while self._fill(deadline):
                self._buffer.clear()
        except TimeoutError:
            return False
        return True

    # -- TLS and closing ----------------------------------------------------

    def starttls(self, context: ssl.SSLContext, timeout: float = 10) -> None:
        """Switch to TLS as the server; plaintext buffered so far is dropped.

        Raises ``ssl.SSLError`` (or OSError) if the handshake fails, e.g.
        because the client rejected the certificate.
        """
        self._buffer.clear()  # RFC 3207 4.2: nothing sent before TLS counts
        self._sock.settimeout(timeout)
        with self._lock:
            self._sock = context.wrap_socket(self._sock, server_side=True)
        self.tls = True

    def close(self, *, reset: bool = False) -> None:
        """Close the connection; ``reset=True`` sends RST instead of FIN."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if reset:
                with contextlib.suppress(OSError):
                    self._sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                    )
            self._sock.close()

    def interrupt(self) -> None:
        """Wake any blocked read with end of stream (used when stopping)."""
        with self._lock:
            if not self.closed:
                with contextlib.suppress(OSError):
                    # The base method, so an SSLSocket keeps its state.
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


Handler = Callable[[Conversation], None]


def _hung_up(conv: Conversation) -> bool:
    """Whether a hook closed ``conv`` (a call, so type checkers re-read it)."""
    return conv.closed


def _verb(line: str) -> str:
    return line.split(" ", 1)[0].split(":", 1)[0].strip().upper()


class ScriptedServer:
    """Run ``handler`` for every connection to a loopback address.

    ``connections`` counts accepted connections, ``conversations`` keeps them,
    and ``errors`` collects exceptions that escaped a handler (except those
    caused by stopping the server); tests usually assert it is empty.
    """

    def __init__(
        self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self._lock = threading.Condition()
        self._conversations: list[Conversation] = []
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._active = 0
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<ScriptedServer {self.host}:{self.port}>"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conversations)

    @property
    def conversations(self) -> list[Conversation]:
        with self._lock:
            return list(self._conversations)

    @property
    def errors(self) -> list[BaseException]:
        with self._lock:
            return list(self._errors)

    @property
    def lines(self) -> list[str]:
        """Every line read by every conversation, in connection order."""
        return [line for conv in self.conversations for line in list(conv.lines)]

    @property
    def verbs(self) -> list[str]:
        """The verbs of ``lines``, e.g. to assert ``"DATA" not in verbs``."""
        return [_verb(line) for line in self.lines]

    @property
    def bodies(self) -> list[bytes]:
        """Every message body read with ``read_data``."""
        return [body for conv in self.conversations for body in list(conv.bodies)]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        """Block until ``predicate()`` holds; re-checked on each connection
        and each handler exit. Raises TimeoutError."""
        with self._lock:
            if not self._lock.wait_for(predicate, timeout):
                raise TimeoutError(f"condition not met within {timeout} s")

    def wait_for_connections(self, count: int, timeout: float = 10) -> None:
        """Block until ``count`` connections were accepted."""
        self.wait_until(lambda: len(self._conversations) >= count, timeout)

    def wait_idle(self, timeout: float = 10) -> None:
        """Block until every handler of an accepted connection has returned.

        A connection not accepted yet does not count: after a bare connect,
        call ``wait_for_connections`` first.
        """
        self.wait_until(lambda: self._active == 0, timeout)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Bind and start accepting in a background thread."""
        if self._acceptor is not None:
            raise RuntimeError("server already running")
        listener = bind_socket(self.host, self.port)
        try:
            listener.listen(64)
            self.port = listener.getsockname()[1]
            self._wake_r, self._wake_w = socket.socketpair()
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept_loop,
            name=f"scripted-{self.host}:{self.port}",
            daemon=True,
        )
        self._acceptor.start()

    def stop(self, timeout: float = 5) -> None:
        """Stop accepting, wake every handler with end of stream, join them."""
        if self._acceptor is None:
            return
        with self._lock:
            self._stopping = True
        assert self._wake_w is not None
        self._wake_w.send(b"x")
        self._acceptor.join()
        self._acceptor = None
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._listener = self._wake_r = self._wake_w = None
        for conv in self.conversations:
            conv.interrupt()
        deadline = time.monotonic() + timeout
        stuck = []
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                stuck.append(thread.name)
        for conv in self.conversations:
            conv.close()
        if stuck:
            with self._lock:
                self._errors.append(
                    RuntimeError(f"handlers still running at stop: {stuck}")
                )

    def __enter__(self) -> ScriptedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        assert self._wake_r is not None
        while True:
            readable, _, _ = select.select([self._listener, self._wake_r], [], [])
            if self._wake_r in readable:
                return
            try:
                sock, peer = self._listener.accept()
            except OSError:
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conv = Conversation(sock, peer)
            thread = threading.Thread(
                target=self._serve,
                args=(conv,),
                name=f"scripted-{self.port}-{conv.peer_port}",
                daemon=True,
            )
            with self._lock:
                self._conversations.append(conv)
                self._threads.append(thread)
                self._active += 1
                self._lock.notify_all()
            thread.start()

    def _serve(self, conv: Conversation) -> None:
        try:
            self.handler(conv)
        except BaseException as error:
            with self._lock:
                if not (self._stopping and isinstance(error, OSError)):
                    self._errors.append(error)
        finally:
            conv.close()
            with self._lock:
                self._active -= 1
                self._lock.notify_all()


# -- ready-made handlers -------------------------------------------------------

Hook = Callable[[Conversation, str], str | None]
"""Called with the command line (sans CRLF); returns the reply to send instead
of the default, or None for the default. If the hook closes the conversation,
nothing more is sent."""

DotHook = Callable[[Conversation, bytes], str | None]
"""Called with the message body after the final dot; same contract as Hook."""


def greeting(reply: str) -> Handler:
    """Greet with ``reply`` (e.g. ``"554 no"``), answer 503 to anything but
    QUIT, and wait for QUIT or the client closing."""

    def handler(conv: Conversation) -> None:
        with contextlib.suppress(ConnectionError):
            conv.send(reply)
            while line := conv.readline():
                if _verb(line) == "QUIT":
                    conv.send("221 2.0.0 bye")
                    return
                conv.send("503 5.5.1 bad sequence of commands")

    return handler


def tarpit(timeout: float = 60) -> Handler:
    """Accept and never send a byte, until the client leaves (or ``timeout``)."""

    def handler(conv: Conversation) -> None:
        conv.sleep_until_closed(timeout)

    return handler


def normal(
    *,
    greeting: str = f"220 {HOSTNAME} ESMTP scripted",
    ehlo_lines: tuple[str, ...] = ("PIPELINING", "8BITMIME"),
    starttls_context: ssl.SSLContext | None = None,
    on_ehlo: Hook | None = None,
    on_starttls: Hook | None = None,
    on_mail: Hook | None = None,
    on_rcpt: Hook | None = None,
    on_auth: Hook | None = None,
    on_data: Hook | None = None,
    on_dot: DotHook | None = None,
    on_quit: Hook | None = None,
    after_dot: str = "250 2.0.0 ok",
    idle_timeout: float = 60.0,
) -> Handler:
    """A well-behaved SMTP server; each ``on_*`` hook may replace one reply.

    AUTH is answered 235 (any credentials; offer it with ``ehlo_lines``).
    ``starttls_context`` advertises STARTTLS and performs it (a failed
    handshake ends the conversation and is kept in ``conv.tls_error``).
    ``on_data`` replaces the 354 reply: return a non-354 reply to refuse, or
    send 354 yourself and read what you like. The body is read (and kept in
    ``conv.bodies``) before ``on_dot`` runs. The conversation ends at QUIT, at
    end of stream, as soon as a hook closes it, or with ``421`` after
    ``idle_timeout`` seconds without a command.
    """

    def reply(conv: Conversation, hook: Hook | None, line: str, default: str) -> None:
        answer = hook(conv, line) if hook is not None else None
        if not conv.closed:
            conv.send(default if answer is None else answer)

    def handler(conv: Conversation) -> None:
        try:
            conv.send(greeting)
            while not conv.closed:
                try:
                    line = conv.readline(idle_timeout)
                except TimeoutError:
                    conv.send("421 4.4.2 idle timeout")
                    return
                if not line:
                    return
                command = line.rstrip("\r\n")
                verb = _verb(command)
                if verb == "EHLO":
                    keywords = list(ehlo_lines)
                    if starttls_context is not None and not conv.tls:
                        keywords.append("STARTTLS")
                    lines = [HOSTNAME, *keywords]
                    default = "\r\n".join(
                        [f"250-{word}" for word in lines[:-1]] + [f"250 {lines[-1]}"]
                    )
                    reply(conv, on_ehlo, command, default)
                elif verb == "HELO":
                    reply(conv, on_ehlo, command, f"250 {HOSTNAME}")
                elif verb == "STARTTLS":
                    available = starttls_context is not None and not conv.tls
                    answer = on_starttls(conv, command) if on_starttls else None
                    if _hung_up(conv):
                        return
                    if answer is None:
                        answer = (
                            "220 2.0.0 go ahead"
                            if available
                            else "502 5.5.1 STARTTLS not offered"
                        )
                    conv.send(answer)
                    if available and answer.startswith("220"):
                        assert starttls_context is not None
                        try:
                            conv.starttls(starttls_context)
                        except (ssl.SSLError, OSError) as error:
                            conv.tls_error = error
                            return
                elif verb == "AUTH":
                    reply(conv, on_auth, command, "235 2.7.0 ok")
                elif verb == "MAIL":
                    reply(conv, on_mail, command, "250 2.1.0 ok")
                elif verb == "RCPT":
                    reply(conv, on_rcpt, command, "250 2.1.5 ok")
                elif verb == "DATA":
                    answer = on_data(conv, command) if on_data else None
                    if _hung_up(conv):
                        return
                    conv.send(
                        "354 end with <CRLF>.<CRLF>" if answer is None else answer
                    )
                    if answer is None or answer.startswith("354"):
                        body = conv.read_data()
                        final = on_dot(conv, body) if on_dot else None
                        if not _hung_up(conv):
                            conv.send(after_dot if final is None else final)
                elif verb == "QUIT":
                    reply(conv, on_quit, command, "221 2.0.0 bye")
                    return
                elif verb in ("RSET", "NOOP"):
                    conv.send("250 2.0.0 ok")
                else:
                    conv.send("500 5.5.2 command not recognized")
        except ConnectionError:  # ClientClosed included: the client left
            return

    return handler


def _replace_reply(stage: str, reply: str, *, close: bool) -> Handler:
    """``normal`` with the reply to ``stage`` replaced (then closing, or not)."""

    def hook(conv: Conversation, _: object) -> str | None:
        if not close:
            return reply
        conv.send(reply)
        conv.close()
        return None

    stage = stage.upper()
    if stage == "GREETING":
        if not close:
            return normal(greeting=reply)

        def handler(conv: Conversation) -> None:
            conv.send(reply)

        return handler
    hooks: dict[str, dict[str, Any]] = {
        "EHLO": {"on_ehlo": hook},
        "MAIL": {"on_mail": hook},
        "RCPT": {"on_rcpt": hook},
        "DATA": {"on_data": hook},
        "DOT": {"on_dot": hook},
    }
    if stage not in hooks:
        raise ValueError(f"unknown stage {stage!r}")
    return normal(**hooks[stage])


def dripping(
    at: str, interval: float = 0.3, length: int = 40, **options: Any
) -> Handler:
    """``normal(**options)``, but the reply to the ``at`` stage (one
    ``length``-byte line) comes one byte every ``interval`` seconds, a
    slow-drip tarpit; the conversation ends when the client leaves.

    Stages: GREETING, EHLO, AUTH (offered in EHLO), MAIL, RCPT, DATA (a 354),
    DOT (a 250).
    """
    stage = at.upper()
    code = {"GREETING": "220", "DATA": "354", "AUTH": "235"}.get(stage, "250")
    line = f"{code} " + "x" * (length - 4)

    def drip(conv: Conversation, _: object) -> None:
        conv.drip(line, interval)
        conv.close()

    if stage == "GREETING":
        return lambda conv: drip(conv, None)
    hooks: dict[str, dict[str, Any]] = {
        "EHLO": {"on_ehlo": drip},
        "AUTH": {"on_auth": drip, "ehlo_lines": ("PIPELINING", "AUTH PLAIN")},
        "MAIL": {"on_mail": drip},
        "RCPT": {"on_rcpt": drip},
        "DATA": {"on_data": drip},
        "DOT": {"on_dot": drip},
    }
    if stage not in hooks:
        raise ValueError(f"unknown stage {stage!r}")
    return normal(**hooks[stage], **options)


def drop_after_dot() -> Handler:
    """Read the whole message, then close without replying."""

    def on_dot(conv: Conversation, body: bytes) -> None:
        conv.close()

    return normal(on_dot=on_dot)


def silent_after_dot(timeout: float = 60) -> Handler:
    """Read the whole message, then never reply until the client leaves."""

    def on_dot(conv: Conversation, body: bytes) -> None:
        conv.sleep_until_closed(timeout)
        conv.close()

    return normal(on_dot=on_dot)


def drop_mid_data(after_bytes: int) -> Handler:
    """Answer DATA with 354, read ``after_bytes`` of the message, then close
    (with RST, as a crashed server would)."""

    def on_data(conv: Conversation, line: str) -> None:
        conv.send("354 end with <CRLF>.<CRLF>")
        conv.read_bytes(after_bytes)
        conv.close(reset=True)

    return normal(on_data=on_data)


def reply_421_after_rcpts(n: int) -> Handler:
    """Accept ``n`` RCPTs, answer the next one ``421`` and close."""

    def on_rcpt(conv: Conversation, line: str) -> str | None:
        rcpts = sum(1 for verb in conv.verbs if verb == "RCPT")
        if rcpts <= n:
            return None
        conv.send("421 4.3.2 service shutting down")
        conv.close()
        return None

    return normal(on_rcpt=on_rcpt)


def long_reply_line(at: str = "MAIL", length: int = 9000) -> Handler:
    """Answer the ``at`` stage with one ``250`` reply line of ``length`` bytes
    (smtplib gives up beyond 8192); otherwise behave like ``normal``.

    Stages: GREETING, EHLO, MAIL, RCPT, DATA, DOT.
    """
    return malformed_reply("250 " + "x" * (length - 4), at=at)


def malformed_reply(line: str, at: str = "RCPT", *, close: bool = False) -> Handler:
    """Answer the ``at`` stage with ``line`` verbatim (e.g. ``"XYZ"``,
    ``"354 odd"`` or ``"550 4.1.1 mixed"``) and carry on like ``normal``;
    with ``close=True`` close the connection right after it instead.

    Stages: GREETING, EHLO, MAIL, RCPT, DATA, DOT. Other stages stay normal.
    """
    return _replace_reply(at, line, close=close)


# -- port helpers -------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing is bound to on ``host`` right now.

    The port is released before returning, so another process could take it;
    prefer binding port 0. Use this to start a server later on a known port.
    """
    with bind_socket(host, 0) as sock:
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def refusing(host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """Yield a port on ``host`` where connects are refused (RST).

    A socket stays bound there without listening for the duration, so no one
    else can start listening on it.
    """
    sock = socket.socket(loopback_family(host), socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextlib.contextmanager
def listen_backlog_full(
    host: str = "127.0.0.1", port: int = 0
) -> Iterator[tuple[str, int]]:
    """Yield ``(host, port)`` where TCP connects hang until they time out.

    A listener with ``listen(0)`` that never accepts, whose accept queue is
    filled by connections held open here: Linux then drops further SYNs
    (without ``tcp_abort_on_overflow``), so a client's connect() times out.
    Checked on entry: raises RuntimeError if the queue will not fill.
    """
    family = loopback_family(host)
    listener = bind_socket(host, port)
    held: list[socket.socket] = []
    try:
        listener.listen(0)
        address = listener.getsockname()[:2]
        for _ in range(16):
            probe = socket.socket(family, socket.SOCK_STREAM)
            probe.setblocking(False)
            probe.connect_ex(address)
            _, writable, _ = select.select([], [probe], [], 0.05)
            if not writable:
                probe.close()  # its SYN was dropped: the queue is full
                break
            held.append(probe)
        else:
            raise RuntimeError("accept queue never filled; connects would succeed")
        yield (address[0], address[1])
    finally:
        for sock in held:
            sock.close()
        listener.close()


ScriptedServerFactory = Callable[..., ScriptedServer]
"""The type of the ``scripted_server`` fixture: ``scripted_server(handler, ...)``."""
