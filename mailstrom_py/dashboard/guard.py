"""Who may do what: the token, the login cookie, and the checks that keep other
web pages from acting through a logged-in browser.

* Every request must name an allowed host in ``Host``, so a page of another
  site whose name was made to point at the dashboard's address (DNS
  rebinding) is refused.
* An action is a POST. It must carry the token: in the ``X-Mailstrom-Token``
  header, in a ``token`` form field, or as the login cookie together with the
  ``csrf`` form field the pages hold. Its ``Origin`` (else ``Referer``) must
  be the dashboard itself; a request with neither is accepted only with the
  token in the header, which no other site's page can set without the
  dashboard's consent (it gives none: there is no CORS).
* The cookie holds a value derived from the token, not the token itself; it is
  ``HttpOnly`` and ``SameSite=Strict``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

__all__ = [
    "COOKIE",
    "TOKEN_HEADER",
    "Guard",
    "Refused",
    "dashboard_hosts",
    "host_name",
    "is_loopback",
]

#: The request header that carries the token (for scripts and monitoring).
TOKEN_HEADER = "X-Mailstrom-Token"  # noqa: S105 (a header name, not a secret)
#: The name of the login cookie.
COOKIE = "mailstrom_dashboard"
_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Refused(Exception):
    """A request the guard refuses: its HTTP status and the reason in words."""

    status: int
    reason: str

    def __str__(self) -> str:
        return self.reason


def host_name(host: str) -> str:
    """The name in a ``Host`` value, less the port and a final dot, lower-cased
    (``[::1]:8026`` gives ``::1``)."""
    text = host.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


def _derived(token: str, purpose: bytes) -> str:
    return hmac.new(token.encode("utf-8"), purpose, hashlib.sha256).hexdigest()


def _same(given: str | None, wanted: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), wanted.encode("utf-8"))


class Guard:
    """Checks requests against one token and the host names allowed.

    Args:
        token: the secret that actions need.
        hosts: the host names (no port) the dashboard may be reached by.
    """

    def __init__(self, token: str, hosts: Collection[str]) -> None:
        self._token = token
        self._session = _derived(token, b"mailstrom dashboard session")
        self.csrf = _derived(token, b"mailstrom dashboard form")
        self.hosts = frozenset(host_name(h) for h in hosts)

    def check_host(self, headers: Message) -> None:
        """Refuse a request whose ``Host`` is missing or not allowed.

        Raises:
            Refused: 421 (misdirected request).
        """
        host = headers.get("Host")
        if host is None or host_name(host) not in self.hosts:
            raise Refused(421, "this dashboard does not answer to that host name")

    def logged_in(self, headers: Message) -> bool:
        """Whether the request carries the login cookie."""
        return _same(self._cookie(headers), self._session)

    def has_token(self, headers: Message) -> bool:
        """Whether the request carries the token: in the header, or the cookie."""
        return self.token_matches(headers.get(TOKEN_HEADER)) or self.logged_in(headers)

    def token_matches(self, given: str | None) -> bool:
        return _same(given, self._token)

    def login_cookie(self) -> str:
        """The ``Set-Cookie`` value that logs a browser in."""
        return f"{COOKIE}={self._session}; Path=/; HttpOnly; SameSite=Strict"

    @staticmethod
    def logout_cookie() -> str:
        """The ``Set-Cookie`` value that logs a browser out."""
        return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"

    def authorise(self, headers: Message, form: Mapping[str, Sequence[str]]) -> str:
        """Check an action request; return how it proved the token
        (``"token header"``, ``"token field"`` or ``"login"``).

        Raises:
            Refused: 403 for a request from another origin (or of unknown
                origin without the header), 401 without the token.
        """
        origin = self.origin_matches(headers)
        if origin is False:
            raise Refused(403, "the request comes from another site")
        header = headers.get(TOKEN_HEADER)
        if header is not None:
            if not self.token_matches(header):
                raise Refused(401, "the token is wrong")
            return "token header"
        if origin is None:
            raise Refused(403, "the request names no Origin or Referer")
        if self.token_matches(_last(form, "token")):
            return "token field"
        if self.logged_in(headers) and _same(_last(form, "csrf"), self.csrf):
            return "login"
        raise Refused(401, "log in first: the token is missing or wrong")

    def origin_matches(self, headers: Message) -> bool | None:
        """True when ``Origin`` (else ``Referer``) is this dashboard, False
        when it is another, None when neither is given."""
        host = (headers.get("Host") or "").strip().lower()
        given = headers.get("Origin") or headers.get("Referer")
        if given is None:
            return None
        parts = urlsplit(given.strip())
        return parts.scheme.lower() in _SCHEMES and parts.netloc.lower() == host

    def _cookie(self, headers: Message) -> str | None:
        raw = headers.get_all("Cookie") or []
        jar: SimpleCookie = SimpleCookie()
        for value in raw:
            try:
                jar.load(value)
            except CookieError:
                continue
        morsel = jar.get(COOKIE)
        return None if morsel is None else morsel.value


def _last(form: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = form.get(name)
    return values[-1] if values else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listening address) is loopback only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def dashboard_hosts(listen_host: str, extra: Collection[str] = ()) -> set[str]:
    """The host names a dashboard listening on ``listen_host`` answers to: that
    address, the loopback names when it is loopback or every address, the
    machine's name when it is every address, and ``extra``."""
    hosts = {host_name(listen_host), *extra}
    wildcard = listen_host in ("0.0.0.0", "::", "")  # noqa: S104
    if wildcard or is_loopback(listen_host):
        hosts.update(("localhost", "127.0.0.1", "::1"))
    if wildcard:
        hosts.add(socket.gethostname())
    return {host_name(h) for h in hosts if h}
