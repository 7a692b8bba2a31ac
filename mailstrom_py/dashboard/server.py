"""The dashboard's HTTP server: the standard library's ``ThreadingHTTPServer``,
one thread per connection, no dependency.

It serves plain HTTP. It is meant for loopback (the default) or for a proxy
in front that adds TLS and its own authentication; a connection that sends
nothing for :data:`REQUEST_TIMEOUT` seconds is closed.
"""

from __future__ import annotations

import logging
import socket
import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .app import Dashboard, Request, Response

__all__ = ["MAX_BODY", "REQUEST_TIMEOUT", "DashboardServer"]

log = logging.getLogger(__name__)

#: The largest request body accepted, in bytes.
MAX_BODY = 64 * 1024
#: Seconds a connection may wait for the request's next bytes.
REQUEST_TIMEOUT = 30.0


class DashboardServer(ThreadingHTTPServer):
    """Serves ``app`` on ``(host, port)``; port 0 picks a free one.

    Use :meth:`serve_forever` in a thread of its own, :meth:`shutdown` from
    another, then :meth:`server_close`.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: Dashboard) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host's name up in DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def url(self) -> str:
        """The address to open in a browser, ``http://HOST:PORT/``."""
        host = self.server_name
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.server_port}/"


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    timeout = REQUEST_TIMEOUT
    server_version = "mailstrom-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        length_text = self.headers.get("Content-Length", "0").strip()
        if not length_text.isdigit():
            self._send(Response(400, b"bad Content-Length\n", "text/plain"))
            return
        length = int(length_text)
        if length > MAX_BODY:
            self._send(Response(413, b"request body too large\n", "text/plain"))
            return
        body = self.rfile.read(length) if length else b""
        host, port = self.client_address[:2]
        request = Request(method, self.path, self.headers, body, f"{host}:{port}")
        self._send(self.server.app.handle(request))

    def _send(self, response: Response) -> None:
        static = response.status == 200 and self.path.startswith("/static/")
        self.send_response(response.status)
        for name, value in response.all_headers(static):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("dashboard %s: " + format, self.address_string(), *args)
