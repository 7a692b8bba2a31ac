"""The result of preparing a message: :class:`PreparedEmail`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PreparedEmail"]


@dataclass(frozen=True, slots=True)
class PreparedEmail:
    """A message ready for SMTP: its envelope and its final bytes.

    Attributes:
        message_id: the Message-ID header's value without angle brackets.
        mail_from: the envelope sender (an addr-spec); ``""`` only for a null
            reverse-path, which ``allow_null_sender`` must have allowed.
        recipients: the envelope recipients, de-duplicated, in first-seen order.
        data: the message as sent: CRLF line ends, every line at most 998 octets plus
            CRLF, ending with CRLF, not dot-stuffed (that is the SMTP layer's job).
        smtputf8: an envelope address or a header needs SMTPUTF8 (RFC 6531).
        eight_bit: ``data`` holds octets above 127, so it needs 8BITMIME (RFC 6152).
        require_tls: RFC 8689 REQUIRETLS was asked for: deliver only over verified
            TLS to a server that offers REQUIRETLS, else fail with 5.7.30.
        tls_optional: the message says ``TLS-Required: No`` (RFC 8689): deliver it
            even where ``Config.require_tls`` would insist on TLS.
    """

    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    smtputf8: bool
    eight_bit: bool
    require_tls: bool = False
    tls_optional: bool = False
