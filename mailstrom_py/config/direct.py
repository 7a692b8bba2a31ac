"""Delivery straight to each recipient domain's mail exchangers."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .checks import check_count, check_port, check_timeout

if TYPE_CHECKING:
    import dns.resolver

__all__ = ["DirectConfig"]


@dataclass(frozen=True)
class DirectConfig:
    """Deliver straight to each recipient domain's mail exchangers (MX records).

    Exchangers are tried in order of preference (equal ones shuffled), each of
    their IPv6 and IPv4 addresses in turn, as RFC 5321 §5.1 asks; like Postfix,
    one delivery tries at most ``max_addresses`` addresses and opens at most
    ``max_sessions`` SMTP sessions before the recipients are deferred.

    TLS toward exchangers is opportunistic by default: STARTTLS whenever it is
    offered, without checking the certificate (as nearly every MTA does, since
    MX host names are not authenticated), falling back to plaintext when the
    handshake fails. ``verify_tls=True`` makes TLS mandatory and checks the
    certificate against the MX host *name*; ``Config.require_tls`` makes TLS
    mandatory without checking the certificate. Either way a server without
    working TLS defers its recipients.

    Authenticated TLS where the recipient domain asks for it: an MTA-STS
    policy (RFC 8461) in mode ``enforce`` limits delivery to the exchangers it
    names and requires TLS verified against the MX host name; DANE TLSA
    records (RFC 7672, with ``dnssec=True``) require TLS with a certificate
    they match, and take precedence. ``TLS-Required: No`` waives both.

    Attributes:
        nameservers: IP addresses of the DNS servers to ask; ``None`` uses the
            system's configuration (``/etc/resolv.conf``).
        dns_port: the port of those servers.
        smtp_port: the port exchangers listen on; 25 except in tests and odd setups.
        resolver: a ready ``dns.resolver.Resolver``, used as given (its timeout and
            lifetime included); overrides the four DNS settings here.
        dns_timeout: seconds to wait for one DNS server to answer.
        dns_lifetime: seconds one lookup may take in all; finding the
            exchangers of one domain (MX and address lookups) takes at most twice
            that.
        max_addresses: the most addresses tried in one delivery to a domain (at
            least 2, RFC 5321 §5.1).
        max_sessions: the most SMTP sessions (connections that were accepted)
            in one delivery to a domain.
        mx_cache_size: how many DNS answers to keep (for their TTL), MX and
            address answers, and apart from them TLSA answers; 0 keeps none.
        verify_tls: require TLS and a certificate valid for the MX host name.
        ca_file: a PEM file of CA certificates to verify against (needs
            ``verify_tls``); the system's CAs by default.
        ssl_context: a ready client ``ssl.SSLContext``, used as given in either
            mode (a context that verifies turns a bad certificate into a TLS
            failure).
        mta_sts: honour recipient domains' MTA-STS policies (on by default).
        mta_sts_context: the verifying client context of authenticated TLS:
            MTA-STS policy fetches over HTTPS, and exchangers under an MTA-STS
            policy; by default the system's CAs (``SSL_CERT_FILE`` honoured).
        mta_sts_cache: a JSON file in which fetched MTA-STS policies are kept
            across restarts; None keeps them in the mailer's storage when it
            is SQLite or PostgreSQL (shared by every worker on it), else in
            memory only.
        dnssec: the nameservers validate DNSSEC and are reached over a trusted
            path (a local validating resolver such as unbound): their AD bit
            is believed, which turns DANE on (as Postfix's
            ``smtp_dns_support_level = dnssec``).
        tls_reports: collect the outcome of TLS toward each policy domain and
            send a daily RFC 8460 report to the address in its
            ``_smtp._tls`` TXT record, through the mailer's own queue (off by
            default); counted in the mailer's storage when it keeps the
            counts (SQLite, PostgreSQL), so that one report goes per domain
            and day across the workers on a queue.
        tls_report_from: the From address and contact of those reports;
            ``postmaster@`` the HELO name by default.
    """

    nameservers: tuple[str, ...] | None = None
    dns_port: int = 53
    smtp_port: int = 25
    resolver: dns.resolver.Resolver | None = field(default=None, compare=False)
    dns_timeout: float = 5.0
    dns_lifetime: float = 15.0
    max_addresses: int = 5
    max_sessions: int = 2
    mx_cache_size: int = 1000
    verify_tls: bool = False
    ca_file: str | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)
    mta_sts: bool = True
    mta_sts_context: ssl.SSLContext | None = field(default=None, compare=False)
    mta_sts_cache: str | None = None
    dnssec: bool = False
    tls_reports: bool = False
    tls_report_from: str | None = None

    def __post_init__(self) -> None:
        servers: object = self.nameservers
        if servers is not None:
            if not isinstance(servers, tuple | list) or not servers:
                raise ConfigError(
                    "must be a non-empty list of addresses", "nameservers"
                )
            for server in servers:
                try:
                    ipaddress.ip_address(server)
                except ValueError:
                    raise ConfigError(
                        f"{server!r} is not an IP address", "nameservers"
                    ) from None
            object.__setattr__(self, "nameservers", tuple(servers))
        check_port(self.dns_port, "dns_port")
        check_port(self.smtp_port, "smtp_port")
        check_timeout(self.dns_timeout, "dns_timeout")
        check_timeout(self.dns_lifetime, "dns_lifetime")
        check_count(self.max_addresses, "max_addresses", minimum=2)
        check_count(self.max_sessions, "max_sessions", minimum=1)
        check_count(self.mx_cache_size, "mx_cache_size", minimum=0)
        if self.ca_file is not None and not self.verify_tls:
            raise ConfigError("a CA file is only used with verify_tls=True", "ca_file")
        if self.ca_file is not None and self.ssl_context is not None:
            raise ConfigError("give ca_file or ssl_context, not both", "ca_file")
        context = self.mta_sts_context
        if context is not None and not (
            context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        ):
            raise ConfigError(
                "must verify certificates and host names", "mta_sts_context"
            )

    def authenticated_context(self) -> ssl.SSLContext:
        """Return the verifying client context of authenticated TLS (MTA-STS).

        ``mta_sts_context`` when given; else ``ssl_context`` if it verifies;
        else one on ``ca_file`` or the system's CAs (``SSL_CERT_FILE`` honoured).

        Raises:
            ConfigError: ``ca_file`` cannot be read.
        """
        if self.mta_sts_context is not None:
            return self.mta_sts_context
        context = self.ssl_context
        if (
            context is not None
            and context.verify_mode == ssl.CERT_REQUIRED
            and context.check_hostname
        ):
            return context
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA file: {exc}", "ca_file") from exc

    def tls_context(self) -> ssl.SSLContext:
        """Return the client context for STARTTLS toward exchangers.

        ``ssl_context`` when given; else, with ``verify_tls``, a context that
        verifies certificates and host names; else an explicitly unverified one
        (encryption against passive eavesdropping only).

        Raises:
            ConfigError: ``ca_file`` cannot be read.
        """
        if self.ssl_context is not None:
            return self.ssl_context
        if self.verify_tls:
            try:
                return ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load CA file: {exc}", "ca_file") from exc
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # Opportunistic TLS (RFC 7435): MX names are not authenticated by DNS, so
        # a certificate check would only turn encryption off, not make it safer.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
