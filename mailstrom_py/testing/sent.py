"""What a recording transport keeps of each message it was handed."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property

__all__ = ["SentMessage"]


@dataclass(frozen=True)
class SentMessage:
    """One message as it went out in one delivery attempt.

    The envelope and the exact bytes are as the transport received them; the
    properties below read the parsed message for the assertions tests make
    most (as Django's ``mail.outbox`` entries allow).

    Attributes:
        message_id: the id ``send_email()`` returned.
        mail_from: the envelope sender; ``""`` for the null sender of a
            delivery status notification.
        recipients: the envelope recipients this attempt reached, Bcc
            recipients included (no header names them).
        data: the bytes sent, DKIM signatures included.
    """

    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes

    @cached_property
    def message(self) -> EmailMessage:
        """The message parsed with ``email.policy.default`` (parsed once)."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)  # so the default policy builds
        return parsed

    @property
    def subject(self) -> str:
        """The Subject, decoded; ``""`` when there is none."""
        return str(self.message.get("Subject", ""))

    @property
    def from_(self) -> str:
        """The first address of the From header (``user@domain``); ``""`` if none."""
        found = self._addresses("From")
        return found[0] if found else ""

    @property
    def to(self) -> list[str]:
        """The addresses of the To header (``user@domain``), in order."""
        return self._addresses("To")

    @property
    def cc(self) -> list[str]:
        """The addresses of the Cc header (``user@domain``), in order."""
        return self._addresses("Cc")

    @property
    def body(self) -> str:
        """The text of the plain-text body (of a multipart message, its
        text/plain part), with ``\\n`` line ends; ``""`` when there is none."""
        part = self.message.get_body(preferencelist=("plain",))
        if part is None:
            return ""
        try:
            text = part.get_content()
        except LookupError:  # a charset Python does not know
            payload = part.get_payload(decode=True)
            text = (
                payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            )
        return str(text).replace("\r\n", "\n")

    def _addresses(self, name: str) -> list[str]:
        return [
            address.addr_spec
            for header in self.message.get_all(name, [])
            for address in getattr(header, "addresses", ())
        ]
