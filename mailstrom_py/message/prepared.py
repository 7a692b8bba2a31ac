"""The result of preparing a message: :class:`PreparedEmail`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["PreparedEmail"]


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(  # noqa: PLR0917 (the dataclass's signature, positions and all)
        self,
        message_id: str,
        mail_from: str,
        recipients: tuple[str, ...],
        data: bytes,
        smtputf8: bool,
        eight_bit: bool,
        require_tls: bool = False,
        tls_optional: bool = False,
    ) -> None:
        # The dataclass's own __init__, written out to fill the frozen
        # instance's slots through their descriptors rather than through
        # object.__setattr__ field by field, in a third of the time: one is
        # built for every message prepared and every one read from storage.
        # Same fields, order and defaults.
        (
            set_message_id,
            set_mail_from,
            set_recipients,
            set_data,
            set_smtputf8,
            set_eight_bit,
            set_require_tls,
            set_tls_optional,
        ) = _SLOT_SETTERS
        set_message_id(self, message_id)
        set_mail_from(self, mail_from)
        set_recipients(self, recipients)
        set_data(self, data)
        set_smtputf8(self, smtputf8)
        set_eight_bit(self, eight_bit)
        set_require_tls(self, require_tls)
        set_tls_optional(self, tls_optional)


# Each field's slot descriptor sets it on an instance, frozen or not.
_SLOT_SETTERS: tuple[Any, ...] = tuple(
    vars(PreparedEmail)[field.name].__set__ for field in fields(PreparedEmail)
)
