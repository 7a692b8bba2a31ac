"""TLSA records for test certificates, computed here, not by the library.

``ee_record(leaf)`` is the DANE-EE(3) SPKI(1) SHA-256(1) record of a trustme
leaf's key, ``ta_record(ca)`` the DANE-TA(2) Cert(0) Full(0) record of a
trustme CA's whole certificate; ``serving(leaf)`` is a server context that
presents the leaf.
"""

from __future__ import annotations

import hashlib
import ssl

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["ee_record", "serving", "ta_record"]


def serving(cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server context presenting ``cert``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def ee_record(cert: trustme.LeafCert) -> str:
    """DANE-EE(3) SPKI(1) SHA-256(1) of ``cert``'s key, as TLSA text."""
    parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = parsed.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


def ta_record(ca: trustme.CA) -> str:
    """DANE-TA(2) Cert(0) Full(0): the whole issuing certificate, as TLSA text."""
    parsed = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    der = parsed.public_bytes(serialization.Encoding.DER)
    return f"2 0 0 {der.hex()}"
