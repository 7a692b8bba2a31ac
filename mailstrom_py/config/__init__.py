"""Configuration values: frozen, validated when they are built.

A bad value raises :class:`~mailstrom_py.errors.ConfigError` at construction, so a
misconfigured mailer fails when the application starts, not at its first delivery.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..errors import ConfigError
from ..retry import RetryPolicy
from .checks import (
    check_count,
    check_hostname,
    check_port,
    check_timeout,
    check_wait,
    host_or_address,
)
from .dkimkey import DkimAlgorithm, DkimConfig
from .dsn import DsnPolicy
from .shaping import DestinationLimits, ReplyRule, ShapingConfig
from .suppression import SuppressionPolicy
from .webhook import WebhookConfig

if TYPE_CHECKING:
    import dns.resolver

__all__ = [
    "Config",
    "DestinationLimits",
    "DirectConfig",
    "DkimAlgorithm",
    "DkimConfig",
    "DsnPolicy",
    "RelayConfig",
    "ReplyRule",
    "ShapingConfig",
    "SuppressionPolicy",
    "Timeouts",
    "TlsMode",
    "WebhookConfig",
]

TlsMode = Literal["starttls", "implicit", "none"]

_DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "implicit": 465, "none": 25}


@dataclass(frozen=True)
class Timeouts:
    """Per-step SMTP timeouts in seconds (RFC 5321 §4.5.3.2).

    Each is a deadline for one whole step, however slowly its bytes come or go
    (a server sending its reply a byte at a time is cut off when the step's time
    is up), and never for a whole transaction, so a slow but live server is not
    cut off. The defaults are Postfix's, which meet the RFC's minimums.

    Attributes:
        connect: opening the TCP connection (and the TLS handshake for implicit TLS).
        greeting: the 220 greeting; also each of EHLO/HELO, STARTTLS, the
            STARTTLS handshake and AUTH.
        mail: the reply to MAIL FROM.
        rcpt: the reply to each RCPT TO.
        data_init: the 354 reply to DATA.
        data_block: sending the message content and its final dot.
        data_done: the reply after the final dot. A timeout here may mean the
            message was delivered, so it is the longest.
        quit: the reply to RSET and QUIT.
    """

    connect: float = 30.0
    greeting: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_block: float = 180.0
    data_done: float = 600.0
    quit: float = 20.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            check_timeout(getattr(self, name), name)

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        """Return timeouts that are all ``seconds`` (handy for tests and tools)."""
        return cls(*(seconds,) * len(cls.__dataclass_fields__))


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
        mx_cache_size: how many DNS answers to keep (for their TTL); 0 keeps none.
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
            across restarts; None keeps them in memory only.
        dnssec: the nameservers validate DNSSEC and are reached over a trusted
            path (a local validating resolver such as unbound): their AD bit
            is believed, which turns DANE on (as Postfix's
            ``smtp_dns_support_level = dnssec``).
        tls_reports: collect the outcome of TLS toward each policy domain and
            send a daily RFC 8460 report to the address in its
            ``_smtp._tls`` TXT record, through the mailer's own queue (off by
            default).
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


@dataclass(frozen=True)
class Config:
    """Everything a :class:`~mailstrom_py.Mailstrom` needs besides its storage.

    Attributes:
        helo_name: the name this host gives in EHLO/HELO and in generated
            Message-IDs; use a name whose DNS points back at the sending address.
        delivery: a :class:`RelayConfig` or a :class:`DirectConfig`.
        retry: when to retry and when to give up.
        timeouts: per-command SMTP timeouts.
        delivery_threads: how many delivery threads run; each takes a batch of
            due messages at a time (up to 16) and delivers them one after another
            over shared connections. Two to four suit a relay on a fast
            network; more help where each server is slow to answer.
        allow_8bit: leave 8-bit text bodies 8-bit (sent with BODY=8BITMIME)
            instead of re-encoding them to 7-bit quoted-printable or base64.
        require_tls: never deliver over plaintext; a server without working TLS
            defers the recipient. A message with the header ``TLS-Required: No``
            (RFC 8689) is exempt. ``send_email(require_tls=True)`` asks more of one
            message: RFC 8689 REQUIRETLS.
        dkim: the keys to DKIM-sign with: one :class:`DkimConfig` or a list of
            them, kept as given (:attr:`dkim_keys` has them as a tuple). A message
            is signed with every key of its From domain, or failing that of the
            nearest parent domain that has keys; a message from any other domain
            goes out unsigned.
        dsn: report to senders what failed (RFC 3464): ``True`` for the defaults
            of :class:`DsnPolicy`, or a ``DsnPolicy``. Off by default, as many
            applications send from addresses nobody reads.
        session_max_messages: how many messages one SMTP connection may carry
            before it is closed; 1 opens a new connection for every message.
        session_idle_timeout: seconds an unused connection is kept open for the
            next message to the same server.
        destination_concurrency: how many deliveries may run at once toward one
            destination (the relay, or one set of mail exchangers) without a
            limit of its own in ``shaping``; 20 as in Postfix.
        drain_timeout: the most seconds ``Mailstrom.stop()`` (and so leaving a
            ``with`` block) spends first giving mail that is due its attempt;
            0 stops at once, leaving due mail in storage.
        claim_lease: seconds a worker's claim on a message lasts before
            another worker may take the message (the claimant presumed dead);
            claims are extended at each half lease while their attempt runs,
            so this bounds how late the mail of a dead worker is retried, not
            how long an attempt may take. By default the retry policy's first
            delay, and at least 30 seconds.
        default_from: the From header of a message that has none, such as
            ``"Example App <noreply@example.org>"``: one mailbox, checked when
            the mailer is built. The envelope sender is read from it too,
            unless ``send_email(mail_from=...)`` gives one. A message with a
            From of its own keeps it.
        event_queue_size: the most events waiting for listeners; more are
            dropped and counted (``Mailstrom.events_dropped``).
        webhook: post events to a URL (:class:`WebhookConfig`); with it, the
            outcome and ``queued`` events are written into storage with what
            they describe, and posted from there at least once each.
        suppression: which hard bounces put an address on the suppression
            list, and for how long (:class:`SuppressionPolicy`).
        shaping: the limits of each destination, the presets for the large
            providers, and the replies that suspend or slow a destination
            (:class:`ShapingConfig`); ``destination_concurrency`` and
            ``session_max_messages`` are its defaults.
    """

    helo_name: str
    delivery: RelayConfig | DirectConfig
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    delivery_threads: int = 4
    allow_8bit: bool = False
    require_tls: bool = False
    dkim: DkimConfig | Sequence[DkimConfig] = ()
    dsn: bool | DsnPolicy = False
    session_max_messages: int = 100
    session_idle_timeout: float = 5.0
    destination_concurrency: int = 20
    drain_timeout: float = 30.0
    claim_lease: float | None = None
    default_from: str | None = None
    event_queue_size: int = 10_000
    webhook: WebhookConfig | None = None
    suppression: SuppressionPolicy = field(default_factory=SuppressionPolicy)
    shaping: ShapingConfig = field(default_factory=ShapingConfig)

    def __post_init__(self) -> None:
        check_hostname(self.helo_name, "helo_name", allow_literal=True)
        if not isinstance(self.delivery, RelayConfig | DirectConfig):
            raise ConfigError("must be a RelayConfig or a DirectConfig", "delivery")
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError("must be a RetryPolicy", "retry")
        if not isinstance(self.timeouts, Timeouts):
            raise ConfigError("must be a Timeouts", "timeouts")
        check_count(self.delivery_threads, "delivery_threads", minimum=1)
        _check_dkim_keys(self.dkim)
        if not isinstance(self.dsn, bool | DsnPolicy):
            raise ConfigError("must be True, False or a DsnPolicy", "dsn")
        check_count(self.session_max_messages, "session_max_messages", minimum=1)
        check_timeout(self.session_idle_timeout, "session_idle_timeout")
        check_count(self.destination_concurrency, "destination_concurrency", minimum=1)
        check_wait(self.drain_timeout, "drain_timeout")
        if self.claim_lease is not None:
            check_timeout(self.claim_lease, "claim_lease")
        _check_default_from(self.default_from)
        check_count(self.event_queue_size, "event_queue_size", minimum=1)
        if self.webhook is not None and not isinstance(self.webhook, WebhookConfig):
            raise ConfigError("must be a WebhookConfig", "webhook")
        if not isinstance(self.suppression, SuppressionPolicy):
            raise ConfigError("must be a SuppressionPolicy", "suppression")
        if not isinstance(self.shaping, ShapingConfig):
            raise ConfigError("must be a ShapingConfig", "shaping")

    @property
    def dkim_keys(self) -> tuple[DkimConfig, ...]:
        """The DKIM keys, as a tuple (however ``dkim`` was given)."""
        if isinstance(self.dkim, DkimConfig):
            return (self.dkim,)
        return tuple(self.dkim)

    @property
    def dsn_policy(self) -> DsnPolicy | None:
        """The report policy ``dsn`` stands for, or ``None`` when reports are off."""
        if isinstance(self.dsn, DsnPolicy):
            return self.dsn
        return DsnPolicy() if self.dsn else None


def _check_dkim_keys(dkim: object) -> None:
    """Check ``Config.dkim``: one key or a list of keys, one per selector and domain."""
    keys = (dkim,) if isinstance(dkim, DkimConfig) else dkim
    if not isinstance(keys, Sequence) or isinstance(keys, str | bytes):
        raise ConfigError("must be a DkimConfig or a list of them", "dkim")
    selectors: set[tuple[str, str]] = set()
    for key in keys:
        if not isinstance(key, DkimConfig):
            raise ConfigError("must be a DkimConfig or a list of them", "dkim")
        selector = (key.domain, key.selector.lower())
        if selector in selectors:
            raise ConfigError(
                f"two keys for selector {key.selector!r} of {key.domain}", "dkim"
            )
        selectors.add(selector)


def _check_default_from(value: object) -> None:
    """Check ``Config.default_from`` as far as text goes; the preparer checks
    the mailbox it names."""
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("must be a non-empty address", "default_from")
    if any(c in value for c in "\r\n\0"):
        raise ConfigError("must not hold CR, LF or NUL", "default_from")
