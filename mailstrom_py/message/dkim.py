"""DKIM signing (RFC 6376, RFC 8463), keys and the DNS records that publish them.

A message is signed once, when it is sent, over the exact bytes every attempt
will transmit, so the signature survives every retry. The keys that sign it are
those of its From domain (or, failing that, of the nearest parent domain that has
keys): RSA and Ed25519 keys of one domain each add a signature. Signatures use
relaxed/relaxed canonicalisation, over-sign From (so a second From added in
transit breaks them) and never carry an ``l=`` tag (which would let text be
appended). List-Unsubscribe and List-Unsubscribe-Post, when present, are signed
and over-signed too, as RFC 8058 §4 asks for one-click unsubscription. This is
the only module that uses dkimpy.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from email.headerregistry import HeaderRegistry
from email.parser import Parser
from email.policy import SMTP
from typing import TYPE_CHECKING

from ..config import DkimAlgorithm, DkimConfig
from ..config.dkimkey import MIN_RSA_BITS
from ..errors import ConfigError, InvalidMessageError
from .address import domain_to_ascii
from .envelope import read_address_header
from .prepared import PreparedEmail

# dkimpy (with PyNaCl) and cryptography are imported on first use, in the
# functions that call them (for their cost, not to dodge a cycle): together
# they take some 120 ms to import, which a mailer without DKIM keys need not pay.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = [
    "DkimSigner",
    "from_domain",
    "generate_key",
    "txt_name",
    "txt_record",
    "txt_value",
    "write_key",
]

log = logging.getLogger(__name__)

_ALGORITHMS: dict[str, bytes] = {
    "rsa-sha256": b"rsa-sha256",
    "ed25519-sha256": b"ed25519-sha256",
}
# RFC 8058 §4: the signature covers both, or receivers ignore one-click
# unsubscription; over-signed so that none can be added in transit. dkimpy's
# defaults leave List-Unsubscribe-Post out.
_UNSUBSCRIBE = (b"list-unsubscribe", b"list-unsubscribe-post")
# RFC 1035 §3.3.14: one character-string of a TXT record holds 255 octets.
_TXT_STRING = 255


@dataclass(frozen=True)
class _Key:
    config: DkimConfig
    material: bytes = field(repr=False)
    """The private key in the form dkimpy signs with."""


class DkimSigner:
    """Signs prepared messages with the keys of their From domain.

    Thread-safe: :meth:`sign` may run in several threads at once.

    Args:
        keys: the configured keys (see :class:`~mailstrom_py.DkimConfig`).

    Raises:
        ConfigError: an Ed25519 key is configured and dkimpy cannot find PyNaCl.
    """

    def __init__(self, keys: Sequence[DkimConfig]) -> None:
        import dkim  # noqa: PLC0415 (imported on first use)

        self._keys: dict[str, list[_Key]] = {}
        for config in keys:
            if config.algorithm == "ed25519-sha256" and not hasattr(dkim, "nacl"):
                raise ConfigError(
                    "ed25519-sha256 signing needs PyNaCl, which dkimpy cannot import",
                    "algorithm",
                )
            key = _Key(config, _signing_material(config))
            self._keys.setdefault(config.domain, []).append(key)
        self._lock = threading.Lock()
        self._unsigned: set[str] = set()

    def __repr__(self) -> str:
        return f"<DkimSigner for {', '.join(sorted(self._keys)) or 'no domain'}>"

    def keys_for(self, domain: str) -> tuple[DkimConfig, ...]:
        """Return the keys that sign mail from ``domain`` (ASCII form).

        Those of the domain itself, else those of its nearest parent domain that
        has keys (DMARC's relaxed alignment accepts a parent's signature), else none.
        """
        return tuple(key.config for key in self._lookup(domain))

    def sign(self, email: PreparedEmail) -> PreparedEmail:
        """Return ``email`` with one DKIM-Signature per key of its From domain.

        The signatures are computed over ``email.data`` as it stands and put in
        front of it; nothing else changes. A message whose From domain has no key
        is returned unchanged: the first such message of each domain is logged as
        a warning, every one at debug level.

        Raises:
            InvalidMessageError: dkimpy cannot sign the message.
        """
        domain = from_domain(email.data)
        keys = self._lookup(domain) if domain is not None else []
        if not keys:
            self._note_unsigned(email, domain)
            return email
        signatures = [_signature(email, key) for key in keys]
        return replace(email, data=b"".join(signatures) + email.data)

    def _lookup(self, domain: str) -> list[_Key]:
        labels = domain.rstrip(".").lower().split(".")
        for start in range(len(labels) - 1):
            found = self._keys.get(".".join(labels[start:]))
            if found:
                return found
        return []

    def _note_unsigned(self, email: PreparedEmail, domain: str | None) -> None:
        shown = domain or "(none)"
        with self._lock:
            first = shown not in self._unsigned
            self._unsigned.add(shown)
        if first:
            log.warning(
                "no DKIM key for the From domain %s: its mail goes out unsigned", shown
            )
        log.debug("%s is not DKIM-signed: no key for %s", email.message_id, shown)


def from_domain(data: bytes) -> str | None:
    """Return the domain of the first From address of a message, in ASCII form.

    Returns ``None`` when the message has no usable From header.
    """
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    value = (
        Parser(policy=SMTP).parsestr(head + "\r\n\r\n", headersonly=True).get("From")
    )
    if value is None:
        return None
    try:
        addresses = read_address_header("From", value, HeaderRegistry())
        if not addresses.addresses:
            return None
        domain = addresses.addresses[0].rpartition("@")[2]
        return domain_to_ascii(domain, "From").lower()
    except InvalidMessageError:
        return None


def _signature(email: PreparedEmail, key: _Key) -> bytes:
    import dkim  # noqa: PLC0415 (imported on first use)

    config = key.config
    try:
        signer = dkim.DKIM(
            email.data,
            logger=log,
            signature_algorithm=_ALGORITHMS[config.algorithm],
        )
        # Only headers the message has are signed; frozen ones once more.
        signer.add_frozen(_UNSUBSCRIBE)
        signature = signer.sign(
            config.selector.encode("ascii"),
            config.domain.encode("ascii"),
            key.material,
            canonicalize=(b"relaxed", b"relaxed"),
            length=False,
        )
    except (dkim.MessageFormatError, dkim.ParameterError) as exc:
        raise InvalidMessageError(f"cannot be DKIM-signed: {exc}") from None
    except dkim.DKIMException as exc:
        # Not quoted: dkimpy's key errors are no business of a message's sender.
        raise InvalidMessageError(
            f"cannot be DKIM-signed with the key of {config.domain} "
            f"({type(exc).__name__})"
        ) from None
    return bytes(signature)


def _signing_material(config: DkimConfig) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    key = config.key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw)
    # dkimpy reads RSA keys in PKCS#1 form only.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


# -- keys and DNS records ---------------------------------------------------------


def generate_key(
    domain: str,
    selector: str,
    algorithm: DkimAlgorithm = "rsa-sha256",
    *,
    bits: int = 2048,
) -> DkimConfig:
    """Generate a new key pair and return it as a :class:`~mailstrom_py.DkimConfig`.

    Publish it with :func:`txt_record` and keep it with :func:`write_key`.

    Args:
        domain: the signing domain.
        selector: the selector to publish the public key under.
        algorithm: ``"rsa-sha256"`` or ``"ed25519-sha256"``.
        bits: the RSA key size (at least 1024; ignored for Ed25519).

    Raises:
        ConfigError: a bad domain, selector, algorithm or size.
    """
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: PLC0415

    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ed25519-sha256":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "rsa-sha256":
        if not isinstance(bits, int) or bits < MIN_RSA_BITS:
            raise ConfigError(f"must be at least {MIN_RSA_BITS}, not {bits!r}", "bits")
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        raise ConfigError(
            f"must be 'rsa-sha256' or 'ed25519-sha256', not {algorithm!r}",
            "algorithm",
        )
    return DkimConfig(domain, selector, _pkcs8(key), algorithm)


def write_key(config: DkimConfig, path: str | os.PathLike[str]) -> None:
    """Write the private key of ``config`` to a new PEM file readable by its owner only.

    Raises:
        FileExistsError: ``path`` exists; it is left alone.
        OSError: the file cannot be written.
    """
    pem = _pkcs8(config.key)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def txt_name(config: DkimConfig) -> str:
    """Return the name the key is published at: ``<sel>._domainkey.<domain>``."""
    return f"{config.selector}._domainkey.{config.domain}"


def txt_value(config: DkimConfig) -> str:
    """Return the TXT record's text: ``v=DKIM1; k=rsa; p=...`` (RFC 6376 §3.6.1).

    For Ed25519 ``p=`` is the raw 32-octet public key in base64 (RFC 8463); for
    RSA it is the DER SubjectPublicKeyInfo.
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    public = config.key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        kind = "ed25519"
        der = public.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        kind = "rsa"
        der = public.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    return f"v=DKIM1; k={kind}; p={base64.b64encode(der).decode('ascii')}"


def txt_record(config: DkimConfig) -> str:
    """Return the record to publish, as a zone-file line.

    ``<selector>._domainkey.<domain> IN TXT "v=DKIM1; k=rsa; p=..."``; text
    longer than 255 octets is split into several quoted strings, which DNS
    joins back together.
    """
    text = txt_value(config)
    strings = [text[i : i + _TXT_STRING] for i in range(0, len(text), _TXT_STRING)]
    return f"{txt_name(config)} IN TXT " + " ".join(f'"{s}"' for s in strings)


def _pkcs8(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
