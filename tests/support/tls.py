"""TLS contexts from a trustme test CA: no ssl mocks, no system trust store.

``server_context(ca, "mx1.test", "127.0.0.1")`` serves a certificate the test
CA signed for those names; ``client_context(ca)`` verifies against the test CA
only; ``self_signed_server_context("mx1.test")`` serves a certificate from an
unrelated CA, which a verifying client must reject.
"""

from __future__ import annotations

import datetime
import functools
import ssl

import trustme

__all__ = [
    "DEFAULT_NAMES",
    "client_context",
    "self_signed_server_context",
    "server_context",
]

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def server_context(
    ca: trustme.CA,
    *names: str,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> ssl.SSLContext:
    """A server context whose certificate ``ca`` issued for ``names``.

    Names may be DNS names or IP addresses (``"127.0.0.1"`` becomes an IP
    SAN). Without names it covers localhost, 127.0.0.1 and ::1. Pass
    ``not_after`` in the past for an expired certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert = ca.issue_cert(
        *(names or DEFAULT_NAMES), not_before=not_before, not_after=not_after
    )
    cert.configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context (hostname checked) trusting only ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return context


@functools.cache
def _unrelated_ca() -> trustme.CA:
    return trustme.CA(organization_name="Unrelated test CA")


def self_signed_server_context(*names: str) -> ssl.SSLContext:
    """A server context with a certificate no test client trusts.

    The certificate is valid for ``names`` (so only the trust chain is wrong)
    but comes from a CA of its own; a verifying client fails with
    ``ssl.SSLCertVerificationError``.
    """
    return server_context(_unrelated_ca(), *names)
