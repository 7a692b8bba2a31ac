"""A small HTTPS server on loopback that serves scripted replies by path.

It plays the host of an MTA-STS policy (``mta-sts.<domain>``)::

    server = HttpsServer(server_context(ca, "mta-sts.d.test"), host="127.0.0.5")
    server.replies["/.well-known/mta-sts.txt"] = Reply(body=b"version: STSv1\\n...")
    with server:
        ...  # fetch from https://mta-sts.d.test:{server.port}/... via 127.0.0.5

Each connection gets one reply and is closed. ``Reply(drip=0.2)`` sends the
reply a byte at a time, 0.2 s apart, to test a client's deadline. Paths
without a reply get 404. ``requests`` records ``(Host header, path)`` of every
request read; a client that gives up during the handshake is no error.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from . import bind_socket

__all__ = ["HttpsServer", "HttpsServerFactory", "Reply"]

_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 404: "Not Found"}


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP reply.

    Attributes:
        status: the status code.
        body: the body, sent with a Content-Length unless ``chunked``.
        content_type: the Content-Type header, or None for none.
        headers: more headers, in order.
        drip: seconds between bytes of the whole reply; None sends it at once.
        chunked: send the body with chunked transfer coding, no length.
    """

    status: int = 200
    body: bytes = b""
    content_type: str | None = "text/plain"
    headers: tuple[tuple[str, str], ...] = ()
    drip: float | None = None
    chunked: bool = False

    def wire(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Status')}"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not self.chunked:
            return head + self.body
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(self.body[i : i + 1000]), self.body[i : i + 1000])
            for i in range(0, len(self.body), 1000)
        )
        return head + chunks + b"0\r\n\r\n"


class HttpsServer:
    """Serve :attr:`replies` over TLS with ``context`` on a loopback address."""

    def __init__(
        self, context: ssl.SSLContext, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.context = context
        self.host = host
        self.port = port
        self.replies: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._requests: list[tuple[str, str]] = []
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._clients: set[socket.socket] = set()

    def __repr__(self) -> str:
        return f"<HttpsServer {self.host}:{self.port}>"

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised while serving; tests expect none."""
        with self._lock:
            return list(self._errors)

    def start(self) -> None:
        listener = bind_socket(self.host, self.port)
        listener.listen(16)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        with self._lock:
            clients = list(self._clients)
            workers = list(self._workers)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for worker in workers:
            worker.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> HttpsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._listener], [], [], 0.05)
            if not readable:
                continue
            client, _ = self._listener.accept()
            worker = threading.Thread(target=self._handle, args=(client,), daemon=True)
            with self._lock:
                self._clients.add(client)
                self._workers.append(worker)
            worker.start()

    def _handle(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            with self.context.wrap_socket(client, server_side=True) as tls:
                path = self._read_request(tls)
                if path is not None:
                    self._send(tls, self.replies.get(path, Reply(404, b"no such path")))
        except OSError:
            pass  # the client gave up (a refused certificate, a deadline)
        except Exception as error:
            with self._lock:
                self._errors.append(error)
        finally:
            with self._lock:
                self._clients.discard(client)
            client.close()

    def _read_request(self, tls: ssl.SSLSocket) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk or len(data) > 65536:
                return None
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        host = ""
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "host":
                host = value.strip()
        with self._lock:
            self._requests.append((host, path))
        return path

    def _send(self, tls: ssl.SSLSocket, reply: Reply) -> None:
        wire = reply.wire()
        if reply.drip is None:
            tls.sendall(wire)
            return
        for index in range(len(wire)):
            if self._stopping.wait(reply.drip):
                return
            tls.sendall(wire[index : index + 1])


HttpsServerFactory = Callable[..., HttpsServer]
"""The type of the ``https_server`` fixture: ``https_server(context, host=...)``."""
