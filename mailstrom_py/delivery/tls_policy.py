"""How TLS is used toward a destination: one decision, made here.

:func:`decide_tls` weighs everything that has a say and returns one frozen
:class:`TlsPolicy`; the transports act on it and the SMTP session applies it.
What has a say:

- the delivery configuration: a relay's ``RelayConfig.tls``; for direct
  delivery, opportunistic STARTTLS unless ``DirectConfig.verify_tls`` requires
  TLS, and the client context of either;
- ``Config.require_tls``, the sender's rule that no mail goes in plaintext;
- the message's own options (RFC 8689): REQUIRETLS, which requires TLS and is
  checked again at MAIL (:func:`requiretls_refusal`), and ``TLS-Required: No``,
  which waives the sender's rule;
- later, the destination's MTA-STS policy (RFC 8461) and DANE records
  (RFC 7672): :func:`decide_tls` has a parameter for each, to be given once
  ``routing/`` finds them.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..config import DirectConfig, RelayConfig
from ..message import PreparedEmail
from ..status import Remote

__all__ = [
    "TlsMode",
    "TlsPolicy",
    "client_context",
    "decide_tls",
    "requiretls_refusal",
]

#: ``"none"``: never TLS. ``"opportunistic"``: STARTTLS when offered, and in
#: plaintext when it is not, is refused, or its handshake fails (RFC 7435).
#: ``"required"``: TLS or nothing.
TlsMode = Literal["none", "opportunistic", "required"]


@dataclass(frozen=True)
class TlsPolicy:
    """How the sessions to one destination use TLS, and whether a message may
    go there at all.

    Attributes:
        mode: see :data:`TlsMode`.
        verify: the certificate is checked (against ``verify_name``); decided by
            the client context, which verifies or not.
        verify_name: the name the certificate must be valid for, also sent in
            SNI; None for the name of the server dialled (the relay's host, the
            exchanger's MX name).
        implicit: TLS from the first byte (port 465) instead of STARTTLS; only
            with ``mode="required"``.
        context: the client context of the handshake; None only with
            ``mode="none"``.
        source: what decided ``mode``, in words, for logs and for people.
        refusal: why a message under this policy may not go to the destination
            at all (TLS is required where its sessions cannot have it), or None;
            such a message is deferred with 4.7.4 before any connection.

    ``context`` and ``source`` take no part in comparisons: policies that differ
    only in them have sessions alike, so a session kept under one serves the
    other.

    Raises:
        ValueError: the fields contradict each other.
    """

    mode: TlsMode
    verify: bool = False
    verify_name: str | None = None
    implicit: bool = False
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    source: str = field(default="", compare=False)
    refusal: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("none", "opportunistic", "required"):
            raise ValueError(f"unknown TLS mode {self.mode!r}")
        if (self.context is None) != (self.mode == "none"):
            raise ValueError("a client context goes with TLS, and only with TLS")
        if self.verify and self.mode == "none":
            raise ValueError("nothing to verify without TLS")
        if self.implicit and self.mode != "required":
            raise ValueError("implicit TLS is always required")

    def after_failed_handshake(self) -> TlsPolicy | None:
        """The policy for trying again once this one's TLS handshake failed:
        without TLS if TLS is opportunistic (RFC 3207 §4.1, Postfix's ``may``
        level), else None: no second try."""
        if self.mode != "opportunistic":
            return None
        return TlsPolicy("none", source=f"{self.source}, in plaintext after TLS failed")


def client_context(delivery: RelayConfig | DirectConfig) -> ssl.SSLContext | None:
    """The client context of TLS toward ``delivery``'s servers; None for a relay
    used without TLS. Built once per transport: reading a CA file is slow.

    Raises:
        ConfigError: the CA file cannot be read.
    """
    if isinstance(delivery, RelayConfig) and delivery.tls == "none":
        return None
    return delivery.tls_context()


def decide_tls(
    delivery: RelayConfig | DirectConfig,
    context: ssl.SSLContext | None,
    *,
    require_tls: bool = False,
    email: PreparedEmail | None = None,
    mta_sts: None = None,
    dane: None = None,
) -> TlsPolicy:
    """The TLS policy toward ``delivery``'s destination for ``email``.

    Args:
        delivery: the relay, or direct delivery (the destination is then one
            recipient domain).
        context: :func:`client_context` of ``delivery``.
        require_tls: ``Config.require_tls``.
        email: the message, for its RFC 8689 options; None for a message without
            any (what the destination gets by default).
        mta_sts: reserved for the domain's MTA-STS policy (RFC 8461), which in
            ``enforce`` mode will make TLS required and verified; None for now.
        dane: reserved for the exchangers' DANE TLSA records (RFC 7672), which
            will make TLS required and say what verifies it; None for now.

    A relay's sessions use TLS as ``RelayConfig.tls`` says, whatever the
    message: a message only decides whether it may use them. Toward an
    exchanger TLS is opportunistic unless ``verify_tls``, ``require_tls`` or
    REQUIRETLS requires it; ``TLS-Required: No`` waives the first two, never
    REQUIRETLS (RFC 8689 §5).
    """
    options = _MessageTls(
        require_tls=require_tls,
        requiretls=email is not None and email.require_tls,
        optional=email is not None and email.tls_optional,
    )
    if isinstance(delivery, RelayConfig):
        return _toward_relay(delivery, context, options)
    return _toward_exchangers(delivery, context, options)


@dataclass(frozen=True)
class _MessageTls:
    """What the sender and the message ask of TLS: ``Config.require_tls``,
    REQUIRETLS, and ``TLS-Required: No``."""

    require_tls: bool
    requiretls: bool
    optional: bool


def _toward_relay(
    relay: RelayConfig, context: ssl.SSLContext | None, options: _MessageTls
) -> TlsPolicy:
    source = f"RelayConfig.tls={relay.tls!r}"
    if relay.tls != "none":
        return TlsPolicy(
            "required",
            verify=context is not None and _verifies(context),
            implicit=relay.tls == "implicit",
            context=context,
            source=source,
        )
    # A REQUIRETLS message goes on, to be refused at MAIL with 5.7.30.
    if options.require_tls and not options.optional and not options.requiretls:
        host, port = relay.address
        refusal = f"TLS is required and the relay {host}:{port} is used without it"
        return TlsPolicy("none", source="Config.require_tls", refusal=refusal)
    return TlsPolicy("none", source=source)


def _toward_exchangers(
    direct: DirectConfig, context: ssl.SSLContext | None, options: _MessageTls
) -> TlsPolicy:
    mode: TlsMode = "required"
    if options.requiretls:
        source = "REQUIRETLS (RFC 8689)"
    elif not (direct.verify_tls or options.require_tls):
        mode, source = "opportunistic", "opportunistic TLS (RFC 7435)"
    elif options.optional:
        mode, source = "opportunistic", "TLS-Required: No (RFC 8689)"
    elif direct.verify_tls:
        source = "DirectConfig.verify_tls"
    else:
        source = "Config.require_tls"
    verify = context is not None and _verifies(context)
    return TlsPolicy(mode, verify=verify, context=context, source=source)


def requiretls_refusal(
    email: PreparedEmail, remote: Remote, features: Mapping[str, str]
) -> str | None:
    """Return why a REQUIRETLS message may not go through this session, or None.

    The session must be TLS with a verified certificate, and the server must
    offer REQUIRETLS in its EHLO reply after STARTTLS (``features`` must hold
    only what was said under TLS). Messages without REQUIRETLS are never refused.
    """
    if not email.require_tls:
        return None
    where = f"{remote.host}:{remote.port}"
    if remote.tls_version is None:
        return f"REQUIRETLS: the session with {where} is not encrypted"
    if not remote.tls_verified:
        return f"REQUIRETLS: the certificate of {where} was not verified"
    if "requiretls" not in features:
        return f"REQUIRETLS: {where} does not offer REQUIRETLS"
    return None


def _verifies(context: ssl.SSLContext) -> bool:
    return context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
