"""Delivery through one relay (smarthost)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..errors import ConfigError
from .checks import check_port, host_or_address

if TYPE_CHECKING:
    import dns.resolver

__all__ = ["RelayConfig", "TlsMode"]

TlsMode = Literal["starttls", "implicit", "none"]

_DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "implicit": 465, "none": 25}


@dataclass(frozen=True)
class RelayConfig:
    """Deliver every message through one relay (a smarthost or submission server).

    Attributes:
        host: the relay's host name or IP address; an address may be in
            brackets (``"[::1]"``), which are dropped: ``host`` holds the bare
            address, dialled and checked against the certificate's IP addresses.
        port: the TCP port; by default 587 for ``"starttls"``, 465 for
            ``"implicit"`` and 25 for ``"none"``.
        tls: ``"starttls"`` (the default) upgrades the connection and refuses to go
            on if the relay does not offer STARTTLS or the handshake fails;
            ``"implicit"`` speaks TLS from the first byte (port 465); ``"none"``
            never uses TLS, for a relay on the same machine or network.
        username: log in with AUTH when set (with ``password``).
        password: the AUTH password; never shown by ``repr()``.
        ca_file: a PEM file of CA certificates to verify the relay against, for a
            private CA; the system's CAs are used when neither this nor
            ``ssl_context`` is given.
        ssl_context: a ready client ``ssl.SSLContext``. It is used as given, so a
            context that does not verify certificates turns verification off.
        allow_plaintext_auth: send credentials without TLS. Off by default; a relay
            configured with credentials and ``tls="none"`` must set it.
        resolver: look the relay's name up (A and AAAA) through this
            ``dns.resolver.Resolver`` instead of the system's resolver. Either
            way a name that does not resolve defers, never fails, the recipients.
    """

    host: str
    port: int | None = None
    tls: TlsMode = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    allow_plaintext_auth: bool = False
    resolver: dns.resolver.Resolver | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", host_or_address(self.host, "host"))
        if self.tls not in _DEFAULT_PORTS:
            raise ConfigError(
                f"must be 'starttls', 'implicit' or 'none', not {self.tls!r}", "tls"
            )
        if self.port is None:
            object.__setattr__(self, "port", _DEFAULT_PORTS[self.tls])
        check_port(self.port, "port")
        if (self.username is None) != (self.password is None):
            raise ConfigError("username and password go together", "username")
        for name in ("username", "password"):
            value = getattr(self, name)
            if value is not None and (not value or any(c in value for c in "\r\n\0")):
                raise ConfigError("must be non-empty, without CR, LF or NUL", name)
        if self.tls == "none" and self.username and not self.allow_plaintext_auth:
            raise ConfigError(
                "credentials over plaintext need allow_plaintext_auth=True",
                "tls",
            )
        if self.ca_file is not None and self.ssl_context is not None:
            raise ConfigError("give ca_file or ssl_context, not both", "ca_file")

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` pair to dial."""
        assert self.port is not None  # set in __post_init__
        return (self.host, self.port)

    def tls_context(self) -> ssl.SSLContext:
        """Return the client context used to verify the relay.

        Raises:
            ConfigError: ``ca_file`` cannot be read.
        """
        if self.ssl_context is not None:
            return self.ssl_context
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA file: {exc}", "ca_file") from exc
