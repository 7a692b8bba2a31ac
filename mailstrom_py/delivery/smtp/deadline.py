"""Reads, writes and TLS handshakes on a non-blocking socket, each ending by
the deadline of the step it belongs to.

A socket timeout bounds one system call: a server that sends its reply a byte
at a time starts it afresh with every byte. Here the socket never blocks, and
every wait for it is a ``poll`` bounded by the time left in the step. That is
also fewer system calls than a socket timeout: a write that the socket's
buffer takes at once is one ``send``, with no ``poll`` before it, and a step
changes no socket option.
"""

from __future__ import annotations

import errno
import io
import math
import select
import socket
import ssl
import time
from typing import Any

__all__ = ["DeadlineReader", "StepDeadline"]


class StepDeadline:
    """When the step under way on one connection must end.

    :meth:`start` begins a step; :meth:`check` and :meth:`wait` raise
    ``TimeoutError`` once its deadline has passed. Not thread-safe: it belongs
    to one connection.
    """

    def __init__(self) -> None:
        self._deadline = math.inf
        # poll objects by (file descriptor, events): no system call to make one.
        self._pollers: dict[tuple[int, int], select.poll] = {}

    def start(self, seconds: float) -> None:
        """Begin a step that must end within ``seconds`` from now."""
        self._deadline = time.monotonic() + seconds

    def check(self) -> None:
        """Raise ``TimeoutError`` if the step's deadline has passed."""
        if self._deadline <= time.monotonic():
            raise TimeoutError("timed out")

    def wait(self, sock: socket.socket, events: int) -> None:
        """Wait until ``sock`` is ready for ``events`` (``select.POLLIN`` or
        ``select.POLLOUT``), has hung up or failed.

        Raises:
            TimeoutError: the step's deadline came first.
        """
        left = self._deadline - time.monotonic()
        if left <= 0 or not self._poller(sock, events).poll(math.ceil(left * 1000)):
            raise TimeoutError("timed out")

    def ready(self, sock: socket.socket, events: int) -> bool:
        """Whether ``sock`` is ready for ``events`` now, found without waiting."""
        return bool(self._poller(sock, events).poll(0))

    def _poller(self, sock: socket.socket, events: int) -> select.poll:
        key = (sock.fileno(), events)
        poller = self._pollers.get(key)
        if poller is None:
            poller = self._pollers[key] = select.poll()
            poller.register(key[0], events)
        return poller

    def send(self, sock: socket.socket, data: bytes) -> None:
        """Send all of ``data`` on the non-blocking ``sock``.

        Raises:
            TimeoutError: the step's deadline passed first.
            OSError: the connection failed.
        """
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self.wait(sock, select.POLLOUT)
                continue
            except ssl.SSLWantReadError:
                self.wait(sock, select.POLLIN)
                continue
            view = view[sent:]

    def handshake(
        self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str
    ) -> ssl.SSLSocket:
        """The TLS client handshake over ``sock``, as a non-blocking socket.

        Raises:
            TimeoutError: the step's deadline passed first.
            OSError: the handshake failed (``ssl.SSLError``) or the connection.
        """
        sock.setblocking(False)
        secure = context.wrap_socket(
            sock, server_hostname=server_hostname, do_handshake_on_connect=False
        )
        try:
            while True:
                try:
                    secure.do_handshake()
                    return secure
                except ssl.SSLWantReadError:
                    self.wait(secure, select.POLLIN)
                except ssl.SSLWantWriteError:
                    self.wait(secure, select.POLLOUT)
        except BaseException:
            secure.close()
            raise


class DeadlineReader(io.RawIOBase):
    """A non-blocking socket as the raw stream under smtplib's reply reader
    (what ``sock.makefile("rb")`` gives), each read ending by the step's
    deadline.

    An end of stream with a reset pending on the socket (the server closed,
    then refused bytes of ours) reads as ``ConnectionResetError``. Closing it
    leaves the socket open: smtplib closes the socket itself.
    """

    def __init__(self, sock: socket.socket, deadline: StepDeadline) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        # TLS may hold decrypted bytes the socket no longer shows: try first.
        self._try_first = isinstance(sock, ssl.SSLSocket)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._sock
        if self._try_first:
            self._deadline.check()
        else:
            self._deadline.wait(sock, select.POLLIN)
        while True:
            try:
                count = sock.recv_into(buffer)
                break
            except (BlockingIOError, ssl.SSLWantReadError):
                self._deadline.wait(sock, select.POLLIN)
            except ssl.SSLWantWriteError:
                self._deadline.wait(sock, select.POLLOUT)
        if not count and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            # The server's end closed, then reset what we sent after: the
            # end of stream hides that bytes of ours were discarded unread.
            raise ConnectionResetError(errno.ECONNRESET, "connection reset")
        return count
