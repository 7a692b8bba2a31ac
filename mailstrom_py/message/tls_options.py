"""A message's own TLS requirements (RFC 8689): REQUIRETLS and ``TLS-Required: No``.

``send_email(require_tls=True)`` asks for REQUIRETLS: the message goes only over
TLS with a verified certificate, to a server that offers REQUIRETLS, with
``REQUIRETLS`` on its MAIL command; a server that cannot promise that fails the
recipients with 5.7.30 rather than receiving the message. The header
``TLS-Required: No`` asks the opposite: deliver even where the sender's policy
(``Config.require_tls``) would insist on TLS. Both are recorded on the
:class:`~mailstrom_py.PreparedEmail` so every attempt honours them;
:mod:`mailstrom_py.delivery.tls_policy` decides what they mean for each one.
"""

from __future__ import annotations

from dataclasses import replace
from email.parser import BytesHeaderParser
from email.policy import compat32

from ..errors import InvalidMessageError
from .prepared import PreparedEmail

__all__ = ["HEADER", "with_tls_options"]

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
