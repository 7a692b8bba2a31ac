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
- toward an exchanger, the recipient domain's MTA-STS policy (RFC 8461) and
  the exchanger's DANE TLSA records (RFC 7672), which DANE outranks
  (RFC 8461 §2); ``TLS-Required: No`` waives both (RFC 8689 §5).
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..config import DirectConfig, RelayConfig
from ..message import PreparedEmail
from ..status import Remote
from .routing.dane import DANE_TA, TlsaLookup, TlsaRecord
from .routing.mta_sts import StsMode, StsOutcome

__all__ = [
    "NO_POLICY",
    "DestinationTls",
    "PolicyType",
    "TlsMode",
    "TlsPolicy",
    "client_context",
    "decide_tls",
    "requiretls_refusal",
    "unverified_context",
]

#: ``"none"``: never TLS. ``"opportunistic"``: STARTTLS when offered, and in
#: plaintext when it is not, is refused, or its handshake fails (RFC 7435).
#: ``"required"``: TLS or nothing.
TlsMode = Literal["none", "opportunistic", "required"]

#: The kind of policy a session is held to, named as RFC 8460 §4.3 names it.
PolicyType = Literal["sts", "tlsa", "no-policy-found"]
NO_POLICY: PolicyType = "no-policy-found"


@dataclass(frozen=True)
class TlsPolicy:
    """How the sessions to one destination use TLS, and whether a message may
    go there at all.

    Attributes:
        mode: see :data:`TlsMode`.
        verify: the server is authenticated: its certificate checked against
            ``verify_name`` (decided by the client context, which verifies or
            not), or, with ``dane``, matched against TLSA records.
        verify_name: the name the certificate must be valid for, also sent in
            SNI; None for the name of the server dialled (the relay's host, the
            exchanger's MX name). Under DANE it is the TLSA base domain, sent
            in SNI (RFC 7672 §8.1) and checked by no context (DANE-TA leaves
            are checked against ``dane_names``).
        implicit: TLS from the first byte (port 465) instead of STARTTLS; only
            with ``mode="required"``.
        context: the client context of the handshake; None only with
            ``mode="none"``.
        source: what decided ``mode``, in words, for logs and for people.
        refusal: why a message under this policy may not go to the destination
            at all (TLS is required where its sessions cannot have it), or None;
            such a message is deferred with 4.7.4 before any connection.
        policy_type: the policy the destination published that holds the
            sessions (see :data:`PolicyType`), recorded with each session.
        policy_domain: the domain that published it, or None: the recipient
            domain of an MTA-STS policy (or of none found), the TLSA base
            domain of DANE records (RFC 8460 §3, the Policy Domain).
        policy_strings: the policy as a TLS report gives it (RFC 8460 §4.4
            "policy-string"), recorded with each session: the lines of an
            MTA-STS policy as fetched, or every authenticated TLSA record
            found, usable or not, in presentation form (Postfix, too, lists
            every record it got); empty otherwise.
        dane: the usable TLSA records the server's chain must match (RFC 7672);
            the context then verifies nothing itself.
        dane_names: the reference identifiers a leaf certificate under a
            DANE-TA(2) record must name (RFC 7672 §3.2.2): the TLSA base
            domain, the MX host name, the recipient domain and, if that is
            an alias, its CNAME-expanded name; empty when no
            record is DANE-TA (DANE-EE checks no name), and then the name of
            the server dialled if the records have one all the same.
        fallback: the policy of a second try after a failed handshake; None
            for the default (see :meth:`after_failed_handshake`).

    ``context``, ``source``, ``fallback``, ``policy_type``, ``policy_domain``
    and ``policy_strings`` take no part in comparisons: policies that differ only
    in them have sessions alike, so a session kept under one serves the other
    (one exchanger serving many domains keeps one session for them all; each
    outcome is labelled with its own domain's policy by the transport).

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
    policy_type: PolicyType = field(default=NO_POLICY, compare=False)
    policy_domain: str | None = field(default=None, compare=False)
    policy_strings: tuple[str, ...] = field(default=(), compare=False, repr=False)
    dane: tuple[TlsaRecord, ...] = ()
    dane_names: tuple[str, ...] = ()
    fallback: TlsPolicy | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("none", "opportunistic", "required"):
            raise ValueError(f"unknown TLS mode {self.mode!r}")
        if (self.context is None) != (self.mode == "none"):
            raise ValueError("a client context goes with TLS, and only with TLS")
        if self.verify and self.mode == "none":
            raise ValueError("nothing to verify without TLS")
        if self.implicit and self.mode != "required":
            raise ValueError("implicit TLS is always required")
        if self.dane and not (self.mode == "required" and self.verify):
            raise ValueError("DANE records make TLS required and verified")
        if self.dane_names and not self.dane:
            raise ValueError("DANE reference identifiers go with DANE records")

    def after_failed_handshake(self) -> TlsPolicy | None:
        """The policy for trying again once this one's TLS handshake failed:
        ``fallback`` if set (an MTA-STS policy in testing mode tries without
        verification), else without TLS if TLS is opportunistic (RFC 3207
        §4.1, Postfix's ``may`` level), else None: no second try."""
        if self.fallback is not None:
            return self.fallback
        if self.mode != "opportunistic":
            return None
        return TlsPolicy(
            "none",
            source=f"{self.source}, in plaintext after TLS failed",
            policy_type=self.policy_type,
            policy_domain=self.policy_domain,
            policy_strings=self.policy_strings,
        )


def client_context(delivery: RelayConfig | DirectConfig) -> ssl.SSLContext | None:
    """The client context of TLS toward ``delivery``'s servers; None for a relay
    used without TLS. Built once per transport: reading a CA file is slow.

    Raises:
        ConfigError: the CA file cannot be read.
    """
    if isinstance(delivery, RelayConfig) and delivery.tls == "none":
        return None
    return delivery.tls_context()


def unverified_context() -> ssl.SSLContext:
    """A client context that checks no certificate: for DANE, which matches
    the server's chain itself, and for unauthenticated TLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class DestinationTls:
    """What an exchanger's destination published about TLS, for
    :func:`decide_tls`.

    Attributes:
        domain: the recipient domain.
        expanded_domain: the recipient domain's CNAME-expanded name, when it
            is an alias whose chain came DNSSEC-authenticated; "" otherwise.
        mta_sts: the domain's MTA-STS policy as found, or None (not looked up).
        dane: the exchanger's TLSA records as found, or None (not looked up).
        authenticated: the verifying client context for MTA-STS.
        unverified: a context verifying nothing, for DANE.
    """

    domain: str
    mta_sts: StsOutcome | None = None
    dane: TlsaLookup | None = None
    expanded_domain: str = ""
    authenticated: ssl.SSLContext | None = field(default=None, compare=False)
    unverified: ssl.SSLContext | None = field(default=None, compare=False)


def decide_tls(
    delivery: RelayConfig | DirectConfig,
    context: ssl.SSLContext | None,
    *,
    require_tls: bool = False,
    email: PreparedEmail | None = None,
    destination: DestinationTls | None = None,
) -> TlsPolicy:
    """The TLS policy toward ``delivery``'s destination for ``email``.

    Args:
        delivery: the relay, or direct delivery (the destination is then one
            recipient domain).
        context: :func:`client_context` of ``delivery``.
        require_tls: ``Config.require_tls``.
        email: the message, for its RFC 8689 options; None for a message without
            any (what the destination gets by default). Only its
            ``require_tls`` and ``tls_optional`` are read, so messages alike
            in them get the same policy (a transport may keep it).
        destination: toward an exchanger, what its recipient domain and it
            published: the MTA-STS policy and the TLSA records.

    A relay's sessions use TLS as ``RelayConfig.tls`` says, whatever the
    message: a message only decides whether it may use them. Toward an
    exchanger TLS is opportunistic unless ``verify_tls``, ``require_tls`` or
    REQUIRETLS requires it; ``TLS-Required: No`` waives the first two, never
    REQUIRETLS (RFC 8689 §5). Then, unless ``TLS-Required: No`` waives them:

    - usable authenticated TLSA records make TLS required and matched against
      them; authenticated records none of which is usable make TLS required,
      unauthenticated (RFC 7672 §2.2);
    - else an MTA-STS policy in mode ``enforce`` makes TLS required and
      verified against the MX host name; in mode ``testing`` TLS is tried
      verified first, then as it would be without the policy.

    Raises:
        ValueError: a destination's policy needs a context it lacks.
    """
    options = _MessageTls(
        require_tls=require_tls,
        requiretls=email is not None and email.require_tls,
        optional=email is not None and email.tls_optional,
    )
    if isinstance(delivery, RelayConfig):
        return _toward_relay(delivery, context, options)
    base = _toward_exchangers(delivery, context, options)
    if destination is None:
        return base
    if options.optional and not options.requiretls:
        return dataclasses.replace(base, policy_domain=destination.domain)
    return _published(base, destination)


def _published(base: TlsPolicy, destination: DestinationTls) -> TlsPolicy:
    """``base`` as the destination's DANE records or MTA-STS policy change it."""
    domain = destination.domain
    dane = destination.dane
    if dane is not None and dane.requires_tls:
        records = dane.usable_records
        return TlsPolicy(
            "required",
            verify=bool(records),
            context=_needed(destination.unverified, "DANE"),
            source="DANE (RFC 7672)" if records else "DANE, no usable TLSA record",
            policy_type="tlsa",
            policy_domain=_base_domain(dane),
            policy_strings=tuple(str(record) for record in dane.records),
            verify_name=_base_domain(dane),
            dane=records,
            dane_names=_reference_names(dane, domain, destination.expanded_domain),
        )
    sts = destination.mta_sts
    policy = sts.policy if sts is not None else None
    if policy is None or policy.mode is StsMode.NONE:
        return dataclasses.replace(base, policy_domain=domain)
    verified = TlsPolicy(
        "required" if policy.mode is StsMode.ENFORCE else base.mode,
        verify=True,
        context=_needed(destination.authenticated, "MTA-STS"),
        source=f"MTA-STS {policy.mode.value} (RFC 8461)",
        policy_type="sts",
        policy_domain=domain,
        policy_strings=policy.served_lines,
    )
    if policy.mode is StsMode.ENFORCE or base.verify or base.mode == "none":
        return verified
    unverified = dataclasses.replace(
        base,
        policy_type="sts",
        policy_domain=domain,
        policy_strings=verified.policy_strings,
    )
    return dataclasses.replace(verified, fallback=unverified)


def _base_domain(dane: TlsaLookup) -> str:
    """The TLSA base domain of ``dane`` (RFC 7672 §2.2.2), the name a DANE
    session sends in SNI (§8.1) and the policy domain its TLS reports name
    (RFC 8460 §3): the CNAME-expanded name whose records were found, else
    the MX host name."""
    return (dane.base or dane.host).rstrip(".").lower()


def _reference_names(dane: TlsaLookup, domain: str, expanded: str) -> tuple[str, ...]:
    """The names a DANE-TA leaf may carry (RFC 7672 §3.2.2): the TLSA base
    domain first, the MX host name as written, the next-hop (recipient)
    domain, which DANE always comes with here as its MX records are secure
    (for an implicit MX it is the host name), and, when that domain is an
    alias with a secure CNAME chain, its ``expanded`` name; () without a
    DANE-TA record."""
    if not any(record.usage == DANE_TA for record in dane.usable_records):
        return ()
    names = (_base_domain(dane), dane.host, domain, expanded)
    return tuple(dict.fromkeys(name.rstrip(".").lower() for name in names if name))


def _needed(context: ssl.SSLContext | None, what: str) -> ssl.SSLContext:
    if context is None:
        raise ValueError(f"{what} needs a client context, and none was given")
    return context


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
