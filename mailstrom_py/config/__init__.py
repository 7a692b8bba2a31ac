"""Configuration values: frozen, validated when they are built.

A bad value raises :class:`~mailstrom_py.errors.ConfigError` at construction, so a
misconfigured mailer fails when the application starts, not at its first delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..retry import RetryPolicy
from .checks import (
    check_count,
    check_hostname,
    check_timeout,
    check_wait,
)
from .direct import DirectConfig
from .dkimkey import DkimAlgorithm, DkimConfig
from .dsn import DsnPolicy
from .relay import RelayConfig, TlsMode
from .shaping import DestinationLimits, ReplyRule, ShapingConfig
from .suppression import SuppressionPolicy
from .timeouts import Timeouts
from .webhook import WebhookConfig

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
        max_queued: the most pending messages (with a recipient queued or
            deferred, held ones included) the queue may hold for
            ``send_email()`` and ``send_emails()`` to add more: past it they
            raise :class:`~mailstrom_py.QueueFullError` and store nothing.
            ``None`` (the default) sets no limit. An Outbox counts the queue
            at most once a second and adds what it stored since, so the limit
            is exact for one Outbox between counts and approximate across
            processes (the mail of other producers is seen at the next
            count). Reports the worker writes (delivery status notifications)
            are not refused.
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
    max_queued: int | None = None

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
        if self.max_queued is not None:
            check_count(self.max_queued, "max_queued", minimum=1)

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
