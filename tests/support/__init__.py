"""Loopback test servers for mailstrom_py's tests.

The servers are standalone: they never import ``mailstrom_py``, bind only
loopback addresses (127.0.0.0/8 and ::1), and close every socket they open.

- ``smtpd``: a recording aiosmtpd server with scripted replies.
- ``scripted``: a raw socket SMTP server for protocol faults, plus port helpers
  (free, refusing, and connect-timeout addresses).
- ``dnsd``: a UDP and TCP DNS server built on dnspython's message classes.
- ``dnssec``: a zone signed with dnspython, answered through ``dnsd``, and
  Unbound validating it on a loopback port (the one program it runs).
- ``dane``: TLSA records of test certificates, computed independently.
- ``tls``: certificates and contexts from a trustme test CA.
- ``walfile``: counts the commits in an SQLite write-ahead log.
- ``postgres``: a throwaway PostgreSQL server with fault helpers (needs psycopg).
- ``cli``: the package's command line run in child processes (``python -m
  mailstrom_py``), a daemon among them, and configuration files for it.
- ``mxnet``: a mail network of those servers (DNS zone and exchangers on
  127.0.0.x and ::1) and mailers aimed at it; this one does use the library.
- ``children``: child interpreters for crash tests, and checking their files.
- ``userproject``: a user's project in a temporary directory, and pytest run on
  it in a fresh process with the library's pytest plugin.
- ``webdriver``: headless Chromium driven through chromedriver (WebDriver over
  loopback HTTP), for the dashboard's browser test.

This module holds the one rule they share: which addresses may be bound.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["bind_socket", "loopback_family"]


def loopback_family(host: str) -> socket.AddressFamily:
    """Return the address family of ``host``, refusing anything but loopback."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"test servers take a numeric loopback address, not {host!r}"
        ) from None
    if not address.is_loopback:
        raise ValueError(f"{host} is not a loopback address")
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def bind_socket(
    host: str, port: int = 0, kind: socket.SocketKind = socket.SOCK_STREAM
) -> socket.socket:
    """Bind a socket of ``kind`` to loopback ``host``:``port`` (0 picks a port).

    TCP sockets get SO_REUSEADDR so a server can be restarted on the port of
    one that just stopped (on Linux this never lets two listeners share a
    port). They are made with an explicit IPPROTO_TCP, which asyncio needs to
    set TCP_NODELAY on accepted connections (without it every multi-line
    reply waits 40 ms for a delayed ACK). The caller owns the returned socket
    and must close it.
    """
    proto = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else 0
    sock = socket.socket(loopback_family(host), kind, proto)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
