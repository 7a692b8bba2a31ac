"""Matching a server's certificate chain against TLSA records (RFC 7672 §3, RFC 7671).

:func:`verify_chain` is pure: given the usable records and the chain the
server presented (DER, leaf first) it says match, mismatch or no usable
records, and which record matched.

- DANE-EE(3): the leaf certificate (selector 0) or its public key (selector
  1) must match. Names and validity dates are not checked (RFC 7672 §3.1.1).
- DANE-TA(2): the record names a trust anchor, which must issue the leaf,
  directly or through the intermediates the server sent, each signature
  checked; the leaf must then be valid now and carry one of the reference
  identifiers (RFC 7672 §3.1.2, §3.2.2). The anchor is found in the chain,
  or, for a record that holds a whole certificate (selector 0, matching
  type 0), is that certificate.

The limit of Python's ``ssl``: before Python 3.13 the only public view of
the peer's certificates is the leaf (``getpeercert(binary_form=True)``), so
:func:`peer_chain` then returns the leaf alone, and DANE-TA can match only a
record holding the whole anchor certificate that issued the leaf directly.
On 3.13 and later ``SSLSocket.get_unverified_chain()`` gives the whole chain.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .records import DANE_EE, DANE_TA, TlsaRecord

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["DaneResult", "association_data", "peer_chain", "verify_chain"]

#: The most certificates of a chain walked from the leaf to a trust anchor.
MAX_CHAIN = 10


@dataclass(frozen=True)
class DaneResult:
    """How a server's chain fared against TLSA records.

    Attributes:
        outcome: ``match`` (a usable record matched: the server is
            authenticated), ``mismatch`` (usable records, none matched: the
            server must not be used, RFC 7672 §2.2) or ``no-usable-records``
            (TLS is still required, unauthenticated, RFC 7672 §3.1.3).
        matched: the record that matched, for ``match``.
        usable: the usable records tried.
        unusable: the records left aside.
        detail: why there was no match, in words.
    """

    outcome: Literal["match", "mismatch", "no-usable-records"]
    matched: TlsaRecord | None = None
    usable: tuple[TlsaRecord, ...] = ()
    unusable: tuple[TlsaRecord, ...] = ()
    detail: str = ""

    @property
    def authenticated(self) -> bool:
        """Whether the server is authenticated by DANE."""
        return self.outcome == "match"


def association_data(cert_der: bytes, selector: int, matching_type: int) -> bytes:
    """The TLSA association data of a DER certificate (RFC 6698 §2.1.2, §2.1.3).

    Selector 0 takes the whole certificate, 1 its SubjectPublicKeyInfo;
    matching type 0 keeps it, 1 and 2 take its SHA-256 and SHA-512.

    Raises:
        ValueError: an unknown selector or matching type, or not a certificate.
    """
    if selector == 0:
        selected = cert_der
    elif selector == 1:
        selected = _spki(_load(cert_der))
    else:
        raise ValueError(f"unknown TLSA selector {selector}")
    if matching_type == 0:
        return selected
    if matching_type == 1:
        return hashlib.sha256(selected).digest()
    if matching_type == 2:
        return hashlib.sha512(selected).digest()
    raise ValueError(f"unknown TLSA matching type {matching_type}")


def peer_chain(sock: ssl.SSLSocket) -> tuple[bytes, ...]:
    """The certificates the peer sent, DER, leaf first.

    Uses ``SSLSocket.get_unverified_chain()`` where Python has it (3.13+);
    before that, only the leaf can be had publicly. Empty when the peer sent
    no certificate.
    """
    get_chain = getattr(sock, "get_unverified_chain", None)
    if get_chain is not None:
        chain = get_chain()
        if chain:
            return tuple(bytes(cert) for cert in chain)
    leaf = sock.getpeercert(binary_form=True)
    return (leaf,) if leaf else ()


def verify_chain(
    records: Iterable[TlsaRecord],
    chain: Sequence[bytes],
    *,
    names: Sequence[str],
    now: datetime.datetime | None = None,
) -> DaneResult:
    """Match ``chain`` (DER, leaf first) against ``records`` (RFC 7672 §3).

    ``names`` are the reference identifiers a DANE-TA leaf must carry one
    of: the TLSA base domain, the MX host name if it differs, the next-hop
    domain (RFC 7672 §3.2.2).
    ``now`` (aware, UTC) is when DANE-TA leaves must be valid; by default
    the present. Unusable records are set aside, never matched.
    """
    every = tuple(records)
    usable = tuple(record for record in every if record.usable)
    unusable = tuple(record for record in every if not record.usable)
    if not usable:
        return DaneResult(
            "no-usable-records", None, usable, unusable, "no usable TLSA record"
        )
    if not chain:
        return DaneResult(
            "mismatch", None, usable, unusable, "the server sent no certificate"
        )
    moment = now if now is not None else datetime.datetime.now(datetime.UTC)
    reasons: list[str] = []
    for record in usable:
        if record.usage == DANE_EE:
            reason = _ee_mismatch(record, chain[0])
        else:
            reason = _ta_mismatch(record, chain, names, moment)
        if reason is None:
            return DaneResult("match", record, usable, unusable)
        reasons.append(
            f"{record.usage} {record.selector} {record.matching_type}: {reason}"
        )
    return DaneResult("mismatch", None, usable, unusable, "; ".join(reasons))


def _load(der: bytes) -> x509.Certificate:
    from cryptography import x509  # noqa: PLC0415 (imported on first use)

    return x509.load_der_x509_certificate(der)


def _spki(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _matches(record: TlsaRecord, cert_der: bytes) -> bool:
    try:
        return (
            association_data(cert_der, record.selector, record.matching_type)
            == record.data
        )
    except ValueError:
        return False  # not a certificate cryptography can read


def _ee_mismatch(record: TlsaRecord, leaf: bytes) -> str | None:
    """None if the DANE-EE ``record`` matches ``leaf``, else why not."""
    if _matches(record, leaf):
        return None
    what = "certificate" if record.selector == 0 else "public key"
    return f"the server's {what} does not match"


def _ta_mismatch(
    record: TlsaRecord,
    chain: Sequence[bytes],
    names: Sequence[str],
    now: datetime.datetime,
) -> str | None:
    """None if the DANE-TA ``record`` names an anchor that issued a valid
    leaf for ``names``, else why not."""
    assert record.usage == DANE_TA
    try:
        certs = [_load(der) for der in chain[:MAX_CHAIN]]
    except ValueError:
        return "the server's chain holds something that is not a certificate"
    anchors = [
        (index, certs[index])
        for index in range(1, len(certs))
        if _matches(record, chain[index])
    ]
    if record.selector == 0 and record.matching_type == 0:
        try:
            anchors.append((len(certs), _load(record.data)))
        except ValueError:
            return "the record's certificate cannot be read"
    if not anchors:
        if len(chain) == 1:
            return (
                "no trust anchor: the server's chain beyond the leaf is not available"
            )
        return "no certificate of the server's chain matches"
    if not any(_issued_through(certs, index, anchor) for index, anchor in anchors):
        return "the trust anchor did not issue the server's certificate"
    return _leaf_problem(certs[0], names, now)


def _issued_through(
    certs: list[x509.Certificate], stop: int, anchor: x509.Certificate
) -> bool:
    """Whether ``certs[0]`` chains to ``anchor`` through ``certs[1:stop]``,
    each certificate signed by the next."""
    for index in range(min(stop, len(certs))):
        if _issued_by(certs[index], anchor):
            return True
        if index + 1 >= stop or not _issued_by(certs[index], certs[index + 1]):
            return False
    return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _leaf_problem(
    leaf: x509.Certificate, names: Sequence[str], now: datetime.datetime
) -> str | None:
    """None if ``leaf`` is valid at ``now`` and names one of ``names``."""
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        until = f"{leaf.not_valid_after_utc:%Y-%m-%d}"
        return f"the server's certificate is not valid now (valid until {until})"
    presented = _dns_names(leaf)
    for name in names:
        wanted = name.rstrip(".").lower()
        if any(_name_matches(pattern, wanted) for pattern in presented):
            return None
    shown = ", ".join(presented) or "no host"
    return f"the server's certificate names {shown}, not {', '.join(names) or '-'}"


def _dns_names(cert: x509.Certificate) -> list[str]:
    """The certificate's DNS names: its SAN dNSNames, or its subject CNs if it
    has none (RFC 7672 §3.2.3)."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            str(attribute.value)
            for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return [name.lower() for name in names]


def _name_matches(pattern: str, name: str) -> bool:
    """A presented name against a host name: equal, or ``*.`` standing for
    exactly one whole left-most label (RFC 6125 §6.4.3, as RFC 7672 §3.2.3)."""
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    label, _, parent = name.partition(".")
    return bool(label) and parent == pattern[2:]
