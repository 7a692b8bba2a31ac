"""What a session's TLS came to: the server's authentication under the
session's policy, and the outcome each session records in its ``Remote``.

Results are named as RFC 8460 §4.3 names them, so that a session's record
and a TLS report speak alike.
"""

from __future__ import annotations

import ssl
from dataclasses import replace

from ...status import Remote
from ..routing.dane import peer_chain, verify_chain
from ..tls_policy import TlsPolicy

__all__ = [
    "STARTTLS_NOT_SUPPORTED",
    "VALIDATION_FAILURE",
    "dane_mismatch",
    "failed",
    "handshake_result",
    "held_to",
    "secured",
]

STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
VALIDATION_FAILURE = "validation-failure"

# OpenSSL's X509_V_ERR_* codes with an RFC 8460 result type of their own.
_HOSTNAME_MISMATCH = 62
_CERT_HAS_EXPIRED = 10


def held_to(remote: Remote, tls: TlsPolicy) -> Remote:
    """``remote`` with the policy its session is held to, with the policy's
    strings (an MTA-STS policy's lines, the TLSA records); unchanged for a
    policy no destination published (a relay's)."""
    if tls.policy_domain is None:
        return remote
    return replace(
        remote,
        tls_policy=tls.policy_type,
        tls_policy_domain=tls.policy_domain,
        tls_policy_strings=tls.policy_strings,
    )


def secured(remote: Remote, tls: TlsPolicy, sock: ssl.SSLSocket) -> Remote:
    """``remote`` once TLS is up (and the server authenticated as ``tls`` asks)."""
    return replace(
        remote,
        tls_version=sock.version(),
        tls_verified=tls.verify,
        tls_result="success",
        tls_failure=None,
    )


def failed(remote: Remote, result: str, detail: str) -> Remote:
    """``remote`` after TLS failed with RFC 8460 result type ``result``."""
    return replace(remote, tls_result=result, tls_failure=detail)


def handshake_result(exc: BaseException) -> str:
    """The RFC 8460 result type of a failed handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _HOSTNAME_MISMATCH:
            return "certificate-host-mismatch"
        if exc.verify_code == _CERT_HAS_EXPIRED:
            return "certificate-expired"
        return "certificate-not-trusted"
    return VALIDATION_FAILURE


def dane_mismatch(tls: TlsPolicy, sock: ssl.SSLSocket, host: str) -> str | None:
    """Why the server's chain matches none of ``tls``'s TLSA records, or None
    when it matches one or the policy has none (RFC 7672 §3). DANE-TA leaves
    must name one of ``tls.dane_names``, or ``host``, the MX host name, when
    the policy gives none."""
    if not tls.dane:
        return None
    names = tls.dane_names or (host,)
    result = verify_chain(tls.dane, peer_chain(sock), names=names)
    if result.authenticated:
        return None
    return f"DANE: {result.detail}"
