"""TLSA records for test certificates, computed here, not by the library.

``ee_record(leaf)`` is the DANE-EE(3) SPKI(1) SHA-256(1) record of a trustme
leaf's key, ``ta_record(ca)`` the DANE-TA(2) Cert(0) Full(0) record of a
trustme CA's whole certificate; ``serving(leaf)`` is a server context that
presents the leaf. For the direct-delivery tests on :class:`MxNet`:
``tlsa(net, ...)`` publishes records for ``mx1.d.test``, ``tlsa_queries(net)``
lists the TLSA questions the DNS server was asked, and ``deliver(mailer,
raw)`` sends a message, runs one pass of the worker and returns its one
recipient's status.
"""

from __future__ import annotations

import hashlib
import ssl

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailstrom_py import Mailstrom
from mailstrom_py.status import RecipientStatus

from .mxnet import MxNet

__all__ = ["deliver", "ee_record", "serving", "ta_record", "tlsa", "tlsa_queries"]


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


def tlsa(net: MxNet, *records: str, signed: bool = True) -> None:
    """Publish ``records`` as mx1.d.test's TLSA records on ``net``'s port;
    sign d.test unless ``signed`` is false."""
    for record in records:
        net.zone.add(f"_{net.port}._tcp.mx1.d.test", "TLSA", record)
    if signed:
        net.zone.sign("d.test")


def tlsa_queries(net: MxNet) -> list[str]:
    """The names whose TLSA records the DNS server was asked for."""
    return [name for name, kind in net.dns.queries if kind == "TLSA"]


def deliver(mailer: Mailstrom, raw: bytes) -> RecipientStatus:
    """Send ``raw`` to one recipient, run the worker once, return its status."""
    message_id = mailer.send_email(raw)
    mailer.run_once()
    [status] = mailer.query_status(message_id).recipients
    return status
