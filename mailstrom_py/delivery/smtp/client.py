"""smtplib's client with a deadline for each step of the conversation.

A socket timeout bounds one system call: a server that sends its reply a byte
at a time starts it afresh with every byte, and so holds a delivery thread as
long as it likes. As Postfix's ``smtp_*_timeout`` settings do, a step here
(connect, greeting, EHLO, STARTTLS, AUTH, MAIL, each RCPT, DATA, the message
content, the reply after the final dot) must end by a deadline taken when it
starts, however its bytes trickle in or out.
"""

from __future__ import annotations

import errno
import io
import math
import select
import smtplib
import socket
import ssl
import time
from typing import Any

from ...config import Timeouts

__all__ = ["SmtpClient", "parse_features"]

# How far past its step's deadline a read or write may end before the socket's
# timeout is shortened to fit. Each settimeout() is a system call that gives
# up the GIL, so the usual case (a reply in one read, just after its command)
# keeps the timeout the step started with.
_SLACK = 0.05

# The longest reply line smtplib reads (its _MAXLINE); a longer one fails.
_MAXLINE = 8192


class StepDeadline:
    """When the step under way on one socket must end.

    :meth:`start` begins a step; :meth:`bound` comes before each read or write
    of it, and raises ``TimeoutError`` once the deadline has passed. Not
    thread-safe: it belongs to one connection.
    """

    def __init__(self) -> None:
        self._deadline = math.inf

    def start(self, sock: socket.socket, seconds: float) -> None:
        """Begin a step that must end within ``seconds`` from now."""
        self._deadline = time.monotonic() + seconds
        if sock.gettimeout() != seconds:
            sock.settimeout(seconds)

    def bound(self, sock: socket.socket) -> None:
        """Make the next operation on ``sock`` end by the step's deadline.

        Raises:
            TimeoutError: the deadline has passed.
        """
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        timeout = sock.gettimeout()
        if timeout is None or timeout - left > _SLACK:
            sock.settimeout(left)


class DeadlineReader(io.RawIOBase):
    """A socket as the raw stream under smtplib's reply reader (what
    ``sock.makefile("rb")`` gives), each read bounded by the step's deadline.

    An end of stream with a reset pending on the socket (the server closed,
    then refused bytes of ours) reads as ``ConnectionResetError``. Closing it
    leaves the socket open: smtplib closes the socket itself.
    """

    def __init__(self, sock: socket.socket, deadline: StepDeadline) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._deadline.bound(self._sock)
        count = self._sock.recv_into(buffer)
        if not count and self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            # The server's end closed, then reset what we sent after: the
            # end of stream hides that bytes of ours were discarded unread.
            raise ConnectionResetError(errno.ECONNRESET, "connection reset")
        return count


class SmtpClient(smtplib.SMTP):
    """smtplib.SMTP that dials a given address and bounds each step by a deadline.

    ``connect(host, port)`` keeps ``host`` as the name TLS verifies and sends in SNI
    while dialling ``address``, so a pre-resolved MX address is still checked
    against the MX name rather than the IP. Connecting (with the handshake of
    implicit TLS) must end within ``Timeouts.connect``, then the greeting
    within ``Timeouts.greeting``; after that :meth:`step` starts each step, and
    every read and write of it must end by the step's deadline.
    """

    def __init__(
        self,
        helo_name: str,
        address: str,
        timeouts: Timeouts,
        implicit_tls: ssl.SSLContext | None,
    ) -> None:
        super().__init__(local_hostname=helo_name, timeout=timeouts.greeting)
        self._address = address
        self._timeouts = timeouts
        self._implicit_tls = implicit_tls
        self._deadline = StepDeadline()
        self.dialled = False
        # has_input()'s poll object, registered for the socket _polled.
        self._poller = select.poll()
        self._polled: socket.socket | None = None

    def step(self, seconds: float) -> None:
        """Start a step: its reads and writes must all end within ``seconds``.

        Raises:
            OSError: the connection is closed.
        """
        if self.sock is None:
            raise OSError("not connected")
        self._deadline.start(self.sock, seconds)

    def has_input(self) -> bool:
        """Whether the server has sent anything not read yet (bytes, the end of
        the stream, a reset), found without waiting."""
        sock = self.sock
        if sock is None:
            return True
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        if self._polled is not sock:
            self._poller = select.poll()
            self._poller.register(sock, select.POLLIN)
            self._polled = sock
        return bool(self._poller.poll(0))

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's ``getreply`` (the same results, the same errors), each read
        bounded by the step's deadline."""
        file = self.file
        if file is None:
            if self.sock is None:
                return super().getreply()
            file = self.file = io.BufferedReader(
                DeadlineReader(self.sock, self._deadline)
            )
        if self.debuglevel > 0:
            return super().getreply()
        lines: list[bytes] = []
        while True:
            try:
                line = file.readline(_MAXLINE + 1)
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {exc}"
                ) from exc
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            if len(line) > _MAXLINE:
                self.close()
                raise smtplib.SMTPResponseException(500, "Line too long.")
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                return -1, b"\n".join(lines)
            if line[3:4] != b"-":
                return code, b"\n".join(lines) if len(lines) > 1 else lines[0]

    def send(self, s: Any) -> None:  # smtplib's bytes-like object or str
        if self.sock is not None:
            self._deadline.bound(self.sock)
        super().send(s)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        started = time.monotonic()
        sock = socket.create_connection((self._address, port), self._timeouts.connect)
        # Commands are small writes each awaiting a reply; Nagle would hold them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dialled = True
        try:
            if self._implicit_tls is not None:
                # The handshake is part of the connect step: the time left of it.
                left = self._timeouts.connect - (time.monotonic() - started)
                if left <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(left)
                sock = self._implicit_tls.wrap_socket(sock, server_hostname=host)
            self._deadline.start(sock, self._timeouts.greeting)
        except BaseException:
            sock.close()
            raise
        return sock


def parse_features(text: str) -> dict[str, str]:
    """Parse an EHLO reply's lines after the first into smtplib's feature dict."""
    features: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            key = keyword.lower()
            features[key] = (
                f"{features[key]} {params}".strip() if key in features else params
            )
    return features
