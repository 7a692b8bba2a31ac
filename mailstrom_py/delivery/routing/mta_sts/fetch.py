"""Fetching a domain's MTA-STS policy over HTTPS (RFC 8461 §3.3).

``GET https://mta-sts.<domain>/.well-known/mta-sts.txt`` with the rules the
RFC sets: the certificate must be valid for ``mta-sts.<domain>`` (PKIX, the
system's CAs unless a context says otherwise; ``SSL_CERT_FILE`` is honoured as
``ssl.create_default_context`` does); redirects are not followed (a 3xx is a
failure, as is any status but 200); the body is ``text/plain`` of at most 64
KiB; and the whole fetch (DNS, connect, handshake, request, response) ends by
one deadline, however slowly the server sends.

The policy host is resolved through the given resolver, the one MX lookups
use, and its address dialled with ``http.client`` over a socket connected
here, SNI and certificate checks naming the host.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..dnsquery import DnsTrouble, query
from .policy import PolicyError, StsPolicy, parse_policy

if TYPE_CHECKING:
    import dns.resolver

__all__ = [
    "FETCH_TIMEOUT",
    "MAX_POLICY_SIZE",
    "POLICY_PATH",
    "PolicyFetchError",
    "PolicyFetcher",
    "fetch_policy",
    "policy_host",
]

#: The path of the policy on its host (RFC 8461 §3.3).
POLICY_PATH = "/.well-known/mta-sts.txt"
#: The largest policy body read (RFC 8461 §3.3 suggests 64 KiB).
MAX_POLICY_SIZE = 64 * 1024
#: Seconds a whole fetch may take. RFC 8461 §3.3 suggests about a minute; a
#: delivery thread waits for it, so this is shorter.
FETCH_TIMEOUT = 30.0

FailureType = Literal[
    "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid"
]


class PolicyFetchError(Exception):
    """No valid policy could be fetched.

    Attributes:
        detail: what went wrong, in words.
        result_type: the RFC 8460 §4.3 result type to report:
            ``sts-webpki-invalid`` (the certificate), ``sts-policy-invalid``
            (the body) or ``sts-policy-fetch-error`` (anything else).
    """

    def __init__(self, detail: str, result_type: FailureType) -> None:
        super().__init__(detail)
        self.detail = detail
        self.result_type: FailureType = result_type


def policy_host(domain: str) -> str:
    """The host serving ``domain``'s policy: ``mta-sts.<domain>``."""
    return "mta-sts." + domain.rstrip(".").lower()


@dataclass(frozen=True)
class PolicyFetcher:
    """Fetches policies with fixed settings; call it with a domain.

    Attributes:
        resolver: resolves ``mta-sts.<domain>``; used as given.
        context: a verifying client context; by default
            ``ssl.create_default_context()`` (the system's CAs, or those
            ``SSL_CERT_FILE`` names), built once.
        port: the HTTPS port, 443 except in tests.
        timeout: seconds one whole fetch may take.
        max_size: the most bytes of policy read.

    Raises:
        ValueError: ``context`` does not verify certificates and host names.
    """

    resolver: dns.resolver.Resolver = field(compare=False)
    context: ssl.SSLContext = field(default_factory=ssl.create_default_context)
    port: int = 443
    timeout: float = FETCH_TIMEOUT
    max_size: int = MAX_POLICY_SIZE

    def __post_init__(self) -> None:
        if self.context.verify_mode != ssl.CERT_REQUIRED or not (
            self.context.check_hostname
        ):
            raise ValueError(
                "an MTA-STS policy needs a context that verifies the certificate "
                "and host name (RFC 8461 §3.3)"
            )

    def __call__(self, domain: str) -> StsPolicy:
        """Fetch and parse ``domain``'s policy; see :func:`fetch_policy`."""
        return fetch_policy(
            domain,
            self.resolver,
            context=self.context,
            port=self.port,
            timeout=self.timeout,
            max_size=self.max_size,
        )


def fetch_policy(
    domain: str,
    resolver: dns.resolver.Resolver,
    *,
    context: ssl.SSLContext | None = None,
    port: int = 443,
    timeout: float = FETCH_TIMEOUT,
    max_size: int = MAX_POLICY_SIZE,
) -> StsPolicy:
    """Fetch and parse the MTA-STS policy of ``domain`` (an A-label name).

    Every step counts against one deadline, ``timeout`` seconds from now.
    ``context`` defaults to ``ssl.create_default_context()``.

    Raises:
        PolicyFetchError: no valid policy; its ``result_type`` says why.
    """
    deadline = time.monotonic() + timeout
    host = policy_host(domain)
    if context is None:
        context = ssl.create_default_context()
    addresses = _addresses(resolver, host, deadline)
    tls = _dial(addresses, host, port, context, deadline)
    try:
        status, content_type, body = _get(tls, host, port, deadline, max_size)
    finally:
        tls.close()
    url = f"https://{host}{POLICY_PATH}"
    if status != 200:
        # RFC 8461 §3.3: redirects must not be followed; only 200 is a policy.
        raise PolicyFetchError(f"{url}: HTTP status {status}", "sts-policy-fetch-error")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "text/plain":
        raise PolicyFetchError(
            f"{url}: Content-Type {content_type!r}, not text/plain",
            "sts-policy-invalid",
        )
    try:
        return parse_policy(body.decode("utf-8"))
    except (UnicodeDecodeError, PolicyError) as exc:
        raise PolicyFetchError(f"{url}: {exc}", "sts-policy-invalid") from None


def _addresses(
    resolver: dns.resolver.Resolver, host: str, deadline: float
) -> list[str]:
    found: list[str] = []
    problems: list[str] = []
    for rdtype in ("AAAA", "A"):
        try:
            answer = query(resolver, host, rdtype, deadline=deadline)
        except DnsTrouble as exc:
            problems.append(str(exc))
            continue
        if answer.kind == "nxdomain":
            problems.append(f"{host}: no such host")
            break
        found.extend(str(rdata.address) for rdata in answer.records)  # type: ignore[attr-defined]
    if not found:
        problems = problems or [f"{host}: no address"]
        raise PolicyFetchError("; ".join(problems), "sts-policy-fetch-error")
    return found


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _dial(
    addresses: list[str],
    host: str,
    port: int,
    context: ssl.SSLContext,
    deadline: float,
) -> ssl.SSLSocket:
    """Connect to the first address that answers, then shake hands naming ``host``."""
    problems: list[str] = []
    for address in addresses:
        try:
            sock = socket.create_connection((address, port), _time_left(deadline))
        except OSError as exc:
            problems.append(f"{address} port {port}: {exc}")
            continue
        try:
            sock.settimeout(_time_left(deadline))
            return context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise PolicyFetchError(
                f"{host} ({address}): certificate not valid: {exc.verify_message}",
                "sts-webpki-invalid",
            ) from None
        except OSError as exc:  # ssl.SSLError and TimeoutError among them
            sock.close()
            raise PolicyFetchError(
                f"{host} ({address}): TLS handshake failed: {exc}",
                "sts-policy-fetch-error",
            ) from None
    raise PolicyFetchError(
        f"cannot connect to {host}: " + "; ".join(problems), "sts-policy-fetch-error"
    )


def _get(
    tls: ssl.SSLSocket, host: str, port: int, deadline: float, max_size: int
) -> tuple[int, str | None, bytes]:
    """GET the policy path; return the status, Content-Type and at most
    ``max_size`` bytes of body."""
    connection = _PolicyConnection(host, port, _DeadlineSocket(tls, deadline))
    try:
        connection.request(
            "GET", POLICY_PATH, headers={"Accept": "text/plain", "Connection": "close"}
        )
        response = connection.getresponse()
        length = response.getheader("Content-Length", "")
        if response.status == 200 and length.isdigit() and int(length) > max_size:
            raise PolicyFetchError(
                f"{host}: policy of {length} bytes, more than {max_size}",
                "sts-policy-invalid",
            )
        body = response.read(max_size + 1) if response.status == 200 else b""
    except (OSError, http.client.HTTPException) as exc:
        raise PolicyFetchError(
            f"{host}: HTTP exchange failed: {exc or type(exc).__name__}",
            "sts-policy-fetch-error",
        ) from None
    finally:
        connection.close()
    if len(body) > max_size:
        raise PolicyFetchError(
            f"{host}: policy longer than {max_size} bytes", "sts-policy-invalid"
        )
    return response.status, response.getheader("Content-Type"), body


class _DeadlineSocket:
    """What ``http.client`` uses of a socket (``sendall``, ``makefile``,
    ``close``), every read and write ending by one deadline."""

    def __init__(self, tls: ssl.SSLSocket, deadline: float) -> None:
        self._tls = tls
        self._deadline = deadline

    def bound(self) -> None:
        self._tls.settimeout(_time_left(self._deadline))

    def sendall(self, data: Any) -> None:  # bytes-like
        self.bound()
        self._tls.sendall(data)

    def makefile(self, mode: str) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"unsupported mode {mode!r}")
        return io.BufferedReader(_DeadlineReader(self))

    def recv_into(self, buffer: Any) -> int:
        self.bound()
        return self._tls.recv_into(buffer)

    def close(self) -> None:
        """Leave the TLS socket open: :func:`fetch_policy` closes it."""


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)


class _PolicyConnection(http.client.HTTPConnection):
    """An HTTPS connection over a socket already connected and wrapped."""

    default_port = 443  # the Host header names the port only when it differs

    def __init__(self, host: str, port: int, sock: _DeadlineSocket) -> None:
        super().__init__(host, port)
        self._given = sock

    def connect(self) -> None:
        self.sock = self._given
