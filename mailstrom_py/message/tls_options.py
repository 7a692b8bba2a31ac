"""A message's own TLS requirements (RFC 8689): REQUIRETLS and ``TLS-Required: No``.

``send_email(require_tls=True)`` asks for REQUIRETLS: the message goes only over
TLS with a verified certificate, to a server that offers REQUIRETLS, with
``REQUIRETLS`` on its MAIL command; a server that cannot promise that fails the
recipients with 5.7.30 rather than receiving the message. The header
``TLS-Required: No`` asks the opposite: deliver even where the sender's policy
(``Config.require_tls``) would insist on TLS. Both are recorded on the
:class:`~mailstrom_py.PreparedEmail` so every attempt honours them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from email.parser import BytesHeaderParser
from email.policy import compat32

from ..errors import InvalidMessageError
from ..status import Remote
from .prepared import PreparedEmail

__all__ = ["HEADER", "requiretls_refusal", "with_tls_options"]

#: The RFC 8689 header field.
HEADER = "TLS-Required"
_NAME = HEADER.lower().encode("ascii")


def with_tls_options(email: PreparedEmail, *, require_tls: bool) -> PreparedEmail:
    """Return ``email`` with its TLS requirements recorded.

    ``require_tls`` asks for REQUIRETLS. A ``TLS-Required: No`` header sets
    ``tls_optional``, except with REQUIRETLS, which overrides it (RFC 8689).

    Raises:
        InvalidMessageError: ``TLS-Required`` appears more than once or holds
            anything but ``No``.
    """
    end = email.data.find(b"\r\n\r\n")
    head = email.data if end < 0 else email.data[:end]
    values: list[str] = []
    if _NAME in head.lower():  # the parse is the costly part
        parser = BytesHeaderParser(policy=compat32)
        values = parser.parsebytes(head + b"\r\n\r\n").get_all(HEADER, [])
    if len(values) > 1:
        raise InvalidMessageError(
            f"appears {len(values)} times; one is allowed", HEADER
        )
    if values and str(values[0]).strip().lower() != "no":
        raise InvalidMessageError(
            "its only value is 'No' (RFC 8689); to require TLS for a message, "
            "send it with require_tls=True",
            HEADER,
        )
    tls_optional = bool(values) and not require_tls
    if email.require_tls is require_tls and email.tls_optional is tls_optional:
        return email
    return replace(email, require_tls=require_tls, tls_optional=tls_optional)


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
