"""A webhook receiver on loopback: http.server in a thread, recording the
events POSTed to it, that a test can take down and bring up on one port and
make answer 500.

    receiver = WebhookReceiver()            # a port is chosen; nothing listens
    receiver.up(status=500)                 # listens, answers 500
    receiver.status = 200                   # answers 200 and records events
    receiver.wait_for(lambda events: len(events) >= 3)
    receiver.down()
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import bind_socket

__all__ = ["WebhookReceiver"]


class WebhookReceiver:
    """Records the ``events`` of each POST answered 2xx, in order.

    Attributes:
        status: the status each POST is answered with.
        posts: every POST read: (status answered, headers, body).
    """

    def __init__(
        self, host: str = "127.0.0.1", context: ssl.SSLContext | None = None
    ) -> None:
        probe = bind_socket(host)
        self.host = host
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.context = context
        self.status = 200
        self.posts: list[tuple[int, dict[str, str], bytes]] = []
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/hook"

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def up(self, status: int = 200) -> None:
        """Listen on the port, answering ``status``."""
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.status
                with receiver._lock:
                    receiver.posts.append((status, dict(self.headers), body))
                    if 200 <= status < 300:
                        receiver._events.extend(json.loads(body)["events"])
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        server = ThreadingHTTPServer((self.host, self.port), Handler, False)
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        if self.context is not None:
            server.socket = self.context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not predicate(events := self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"not received in {timeout}s: {events}")
            time.sleep(0.02)
        return events

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
