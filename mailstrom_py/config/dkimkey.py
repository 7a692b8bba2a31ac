"""DKIM signing keys: :class:`DkimConfig`, and reading and checking private keys.

A key is read and checked, with cryptography, when its :class:`DkimConfig` is
built; :mod:`mailstrom_py.message.dkim` turns the loaded keys into what dkimpy
signs with. :mod:`mailstrom_py.config` re-exports the public names.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

from ..errors import ConfigError
from .checks import check_hostname

# cryptography is imported on first use, in load_private_key (for its cost,
# not to dodge a cycle): it takes some 25 ms to import, which a mailer without
# DKIM keys need not pay.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = [
    "MIN_RSA_BITS",
    "DkimAlgorithm",
    "DkimConfig",
    "DkimPrivateKey",
    "load_private_key",
]

log = logging.getLogger(__name__)

#: RFC 8301 §3.2: signers must use RSA keys of at least 1024 bits.
MIN_RSA_BITS = 1024

#: The private key types :func:`load_private_key` returns.
DkimPrivateKey: TypeAlias = "rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey"
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
            recommended) or ``"ed25519-sha256"`` (RFC 8463).
        key: the loaded private key, a ``cryptography`` key object; never shown
            by ``repr()``.

    Raises:
        ConfigError: the domain or selector is not a DNS name; the algorithm is
            ``rsa-sha1`` (RFC 8301 forbids signing with it) or unknown; the key
            cannot be read or parsed, is encrypted, does not fit the algorithm, or
            is an RSA key under 1024 bits; Ed25519 is asked for and PyNaCl,
            which is installed with the package, is missing (a broken install).
            No message quotes the key, nor the path given.
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


def load_private_key(source: object, algorithm: str) -> DkimPrivateKey:
    """Read and check a DKIM private key for ``algorithm``.

    Args:
        source: PEM bytes, or the path of a PEM file (``str`` or path-like).
        algorithm: ``"rsa-sha256"`` or ``"ed25519-sha256"``.

    Returns:
        The key, of the type the algorithm needs.

    Raises:
        ConfigError: the key cannot be read or parsed, is encrypted, is of the
            wrong type, or is an RSA key under :data:`MIN_RSA_BITS` bits. No
            message quotes the key or the path.
    """
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: PLC0415

    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        raise ConfigError("a str is a file path: give PEM text as bytes", "private_key")
    if isinstance(source, str | os.PathLike):
        pem = _read_key_file(source)
    elif isinstance(source, bytes):
        pem = source
    else:
        raise ConfigError(
            f"must be PEM bytes or a file path, not {type(source).__name__}",
            "private_key",
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError(
            "the key is encrypted; give it unencrypted", "private_key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError("is not a PEM private key", "private_key") from None
    if algorithm == "ed25519-sha256":
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(
                "ed25519-sha256 needs an Ed25519 key; this is another kind",
                "private_key",
            )
        return key
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            "rsa-sha256 needs an RSA key; this is another kind", "private_key"
        )
    if key.key_size < MIN_RSA_BITS:
        raise ConfigError(
            f"is a {key.key_size}-bit RSA key; RFC 8301 requires at least "
            f"{MIN_RSA_BITS} bits (2048 recommended)",
            "private_key",
        )
    return key


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            pem = file.read()
    except OSError as exc:
        # Not quoted: a "path" may be key text passed by mistake.
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"cannot read the key file: {reason}", "private_key"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "DKIM key file %s can be read by other users; chmod 600 it",
            os.fspath(path),
        )
    return pem
