"""Reading and checking DKIM private keys, with cryptography.

Kept apart from :mod:`mailstrom_py.config` (which checks keys when a
:class:`~mailstrom_py.DkimConfig` is built) so that the key handling lives in one
place; :mod:`.message.dkim` turns the loaded keys into what dkimpy signs with.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING, TypeAlias

from ..errors import ConfigError

# cryptography is imported on first use, in load_private_key (for its cost,
# not to dodge a cycle): it takes some 25 ms to import, which a mailer without
# DKIM keys need not pay.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = ["MIN_RSA_BITS", "DkimPrivateKey", "load_private_key"]

log = logging.getLogger(__name__)

#: RFC 8301 §3.2: signers must use RSA keys of at least 1024 bits.
MIN_RSA_BITS = 1024

#: The private key types :func:`load_private_key` returns.
DkimPrivateKey: TypeAlias = "rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey"


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
