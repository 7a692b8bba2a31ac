"""smtplib's client with a deadline for each step of the conversation.

A socket timeout bounds one system call: a server that sends its reply a byte
at a time starts it afresh with every byte, and so holds a delivery thread as
long as it likes. As Postfix's ``smtp_*_timeout`` settings do, a step here
(connect, greeting, EHLO, STARTTLS, AUTH, MAIL, each RCPT, DATA, the message
content, the reply after the final dot) must end by a deadline taken when it
starts, however its bytes trickle in or out: the socket is non-blocking and
every wait on it is bounded by the time left (:mod:`.deadline`).
"""

from __future__ import annotations

import io
import select
import smtplib
import socket
import ssl
import sys
import time
from typing import Any

from ...config import Timeouts
from .deadline import DeadlineReader, StepDeadline

__all__ = ["SmtpClient", "parse_features"]

# The longest reply line smtplib reads (its _MAXLINE); a longer one fails.
_MAXLINE = 8192


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

    def step(self, seconds: float) -> None:
        """Start a step: its reads and writes must all end within ``seconds``.

        Raises:
            OSError: the connection is closed.
        """
        if self.sock is None:
            raise OSError("not connected")
        self._deadline.start(seconds)

    def has_input(self) -> bool:
        """Whether the server has sent anything not read yet (bytes, the end of
        the stream, a reset), found without waiting."""
        sock = self.sock
        if sock is None:
            return True
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        return self._deadline.ready(sock, select.POLLIN)

    def secure(
        self, context: ssl.SSLContext, server_hostname: str, seconds: float
    ) -> ssl.SSLSocket:
        """Make the connection TLS (after STARTTLS): a handshake that must end
        within ``seconds``. What was read before it is forgotten.

        Raises:
            OSError: the handshake failed (``ssl.SSLError``), timed out, or
                the connection is closed.
        """
        if self.sock is None:
            raise OSError("not connected")
        self._deadline.start(seconds)
        secure = self._deadline.handshake(self.sock, context, server_hostname)
        self.sock = secure
        self.file = None
        return secure

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
            text = line[4:].strip(b" \t\r\n")
            try:
                code = int(line[:3])
            except ValueError:
                return -1, b"\n".join([*lines, text])
            if line[3:4] != b"-":
                # Most replies are one line: nothing to join.
                return code, b"\n".join([*lines, text]) if lines else text
            lines.append(text)

    def send(self, s: Any) -> None:  # smtplib's bytes-like object or str
        """smtplib's ``send`` (the same errors), ending by the step's deadline."""
        sock = self.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        if isinstance(s, str):
            s = s.encode(self.command_encoding)
        sys.audit("smtplib.send", self, s)
        self._deadline.check()
        try:
            self._deadline.send(sock, s)
        except OSError as exc:
            self.close()
            raise smtplib.SMTPServerDisconnected("Server not connected") from exc

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        started = time.monotonic()
        sock = socket.create_connection((self._address, port), self._timeouts.connect)
        # Commands are small writes each awaiting a reply; Nagle would hold them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dialled = True
        try:
            if self._implicit_tls is None:
                sock.setblocking(False)
            else:
                # The handshake is part of the connect step: the time left of it.
                left = self._timeouts.connect - (time.monotonic() - started)
                self._deadline.start(left)
                self._deadline.check()
                sock = self._deadline.handshake(sock, self._implicit_tls, host)
            self._deadline.start(self._timeouts.greeting)
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
