"""What a mailer does to and about its mail besides delivering it.

DKIM signing keys (:class:`DkimConfig`, :data:`DkimAlgorithm`) and when to
report back to senders (:class:`DsnPolicy`). Both are frozen values checked when
they are built; :mod:`mailstrom_py.config` re-exports them.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError
from .checks import check_count, check_hostname
from .dkimkey import DkimPrivateKey, load_private_key

__all__ = ["DkimAlgorithm", "DkimConfig", "DsnPolicy"]

DkimAlgorithm = Literal["rsa-sha256", "ed25519-sha256"]


@dataclass(frozen=True)
class DkimConfig:
    """One DKIM signing key (RFC 6376) for the mail of one domain.

    The key is read and checked when the value is built, so a bad key fails when
    the application starts rather than at its first message. Give several to
    :class:`Config` to sign with RSA and Ed25519 side by side (RFC 8463), or to
    sign for several domains.

    Attributes:
        domain: the signing domain (``d=``), in ASCII (A-label) form; lower-cased.
        selector: the selector (``s=``): the public key is published as a TXT
            record at ``<selector>._domainkey.<domain>``.
        private_key: the private key as PEM bytes, or the path of a PEM file (a
            ``str`` is always a path). Never shown by ``repr()``.
        algorithm: ``"rsa-sha256"`` (RSA keys of at least 1024 bits; 2048 is
            recommended) or ``"ed25519-sha256"`` (RFC 8463; needs PyNaCl).
        key: the loaded private key, a ``cryptography`` key object; never shown
            by ``repr()``.

    Raises:
        ConfigError: the domain or selector is not a DNS name; the algorithm is
            ``rsa-sha1`` (RFC 8301 forbids signing with it) or unknown; the key
            cannot be read or parsed, is encrypted, does not fit the algorithm, or
            is an RSA key under 1024 bits; Ed25519 is asked for and PyNaCl is not
            installed. No message quotes the key, nor the path given.
    """

    domain: str
    selector: str
    private_key: bytes | str | os.PathLike[str] = field(repr=False)
    algorithm: DkimAlgorithm = "rsa-sha256"
    key: DkimPrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_hostname(self.domain, "domain", allow_literal=False)
        check_hostname(self.selector, "selector", allow_literal=False)
        object.__setattr__(self, "domain", self.domain.rstrip(".").lower())
        algorithm: object = self.algorithm
        if algorithm == "rsa-sha1":
            raise ConfigError(
                "rsa-sha1 must not be used for signing (RFC 8301); use rsa-sha256",
                "algorithm",
            )
        if algorithm not in ("rsa-sha256", "ed25519-sha256"):
            raise ConfigError(
                f"must be 'rsa-sha256' or 'ed25519-sha256', not {algorithm!r}",
                "algorithm",
            )
        # dkimpy signs Ed25519 through PyNaCl, an optional dependency of its own.
        if algorithm == "ed25519-sha256" and importlib.util.find_spec("nacl") is None:
            raise ConfigError(
                "ed25519-sha256 signing needs PyNaCl, which is not installed "
                "(pip install pynacl)",
                "algorithm",
            )
        object.__setattr__(
            self, "key", load_private_key(self.private_key, self.algorithm)
        )


@dataclass(frozen=True)
class DsnPolicy:
    """When a mailer reports back to senders (RFC 3464 delivery status notifications).

    A report goes to the message's envelope sender from the null reverse-path,
    through the mailer's own queue. A message whose sender is null (a report
    itself) never gets one, so reports cannot loop.

    Attributes:
        on_failure: report recipients that end ``FAILED``; the recipients of one
            message that fail in the same attempt share one report.
        delay_after: report a recipient still ``DEFERRED`` after an attempt made
            this many seconds after the message was stored (as Postfix's
            ``delay_warning_time``); ``None`` never does.
        delay_after_attempts: report a recipient still ``DEFERRED`` after this many
            attempts (mox reports after its fifth); ``None`` never does.

    A "delayed" report goes at most once per recipient: with the attempt that
    first crosses one of the two thresholds.

    Raises:
        ConfigError: a threshold is out of range.
    """

    on_failure: bool = True
    delay_after: float | None = None
    delay_after_attempts: int | None = None

    def __post_init__(self) -> None:
        after = self.delay_after
        if after is not None and not (
            isinstance(after, int | float) and math.isfinite(after) and after >= 0
        ):
            raise ConfigError(
                f"must be a finite number of seconds >= 0, not {after!r}",
                "delay_after",
            )
        if self.delay_after_attempts is not None:
            check_count(self.delay_after_attempts, "delay_after_attempts", minimum=1)
