"""Where and how events are posted to a webhook."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from ..errors import ConfigError
from .checks import check_count, check_timeout

__all__ = ["WebhookConfig"]


@dataclass(frozen=True)
class WebhookConfig:
    """A URL that receives the mailer's events as JSON, at least once each.

    Attributes:
        url: an ``https://`` (or, for a receiver on this host, ``http://``)
            URL; each POST carries ``{"events": [...]}``, oldest first, each
            event as :meth:`~mailstrom_py.Event.to_dict` gives it.
        secret: when given, each POST has a header ``X-Mailstrom-Signature:
            sha256=<hex>``, the HMAC-SHA256 of the body under this key.
        timeout: the most seconds one POST may take, from connecting to the
            end of the reply.
        batch: the most events in one POST.
        retry_initial: seconds before the first retry of a failed POST; each
            retry waits twice as long as the last, up to ``retry_max``.
        retry_max: the longest wait between retries, in seconds.
        ca_file: a PEM file of the certificate authorities to trust instead of
            the system's; certificates are always verified.
        kinds: the kinds of events to post; every kind when empty.
    """

    url: str
    secret: str | None = field(default=None, repr=False, metadata={"secret": True})
    timeout: float = 10.0
    batch: int = 100
    retry_initial: float = 1.0
    retry_max: float = 300.0
    ca_file: str | None = None
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("must be an http:// or https:// URL", "url")
        if parts.scheme == "http" and parts.hostname not in (
            "localhost",
            "127.0.0.1",
            "::1",
        ):
            raise ConfigError(
                "must be https:// unless the receiver is on this host", "url"
            )
        check_timeout(self.timeout, "timeout")
        check_count(self.batch, "batch", minimum=1)
        check_timeout(self.retry_initial, "retry_initial")
        check_timeout(self.retry_max, "retry_max")
        if self.secret is not None and (
            not isinstance(self.secret, str) or not self.secret
        ):
            raise ConfigError("must be a non-empty string", "secret")
        if not isinstance(self.kinds, tuple) or not all(
            isinstance(k, str) for k in self.kinds
        ):
            raise ConfigError("must be a tuple of event kinds", "kinds")
