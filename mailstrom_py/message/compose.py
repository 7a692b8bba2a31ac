"""Composing a message from its parts: addresses, subject, text, HTML, files.

:func:`compose` builds the :class:`email.message.EmailMessage` that
``send_email()`` takes, so that the common case needs no MIME knowledge: a text
body, an HTML body or both (as ``multipart/alternative``), and attachments
(``multipart/mixed`` around the body). What the message says is checked when
it is sent, by the preparer; here only what the email package itself refuses
is turned into :class:`~mailstrom_py.InvalidMessageError`.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from pathlib import Path

from ..errors import InvalidMessageError

__all__ = ["Attachment", "Recipients", "compose"]

#: An attachment: the path of a file, or ``(filename, content, mimetype)``,
#: where ``mimetype`` may be ``None`` to guess it from the file name.
Attachment = str | os.PathLike[str] | tuple[str, bytes, str | None]
#: One address, or several.
Recipients = str | Iterable[str]

_UNKNOWN_TYPE = "application/octet-stream"


def compose(
    to: Recipients,
    subject: str,
    text: str | None = None,
    html: str | None = None,
    *,
    attachments: Iterable[Attachment] = (),
    cc: Recipients = (),
    bcc: Recipients = (),
    from_: str | None = None,
    reply_to: Recipients | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """Return a message with these recipients, subject, bodies and attachments.

    The body is ``text/plain`` for ``text``, ``text/html`` for ``html``, and a
    ``multipart/alternative`` of the two (text first, as RFC 2046 §5.1.4 orders
    them: the richest last) when both are given; an empty text body when
    neither is. With attachments the message is ``multipart/mixed``: the body,
    then each file in order.

    Everything after ``html`` is given by keyword.

    Args:
        to: the To addresses: one, or an iterable of them; each may carry a
            display name (``"Bob <bob@example.org>"``).
        subject: the Subject header.
        text: the plain-text body.
        html: the HTML body.
        attachments: file paths (read now; the type is guessed from the name)
            or ``(filename, content, mimetype)`` triples.
        cc: the Cc addresses.
        bcc: the Bcc addresses: they get the message, and the header is
            removed when it is sent.
        from_: the From header; left out when ``None``, for the mailer's
            ``Config.default_from`` to fill in.
        reply_to: the Reply-To addresses.
        headers: more header fields, added in order after the others.

    Raises:
        InvalidMessageError: a header value holds a line break, or an
            attachment's mimetype is not ``type/subtype``; nothing is sent.
        OSError: an attachment's file cannot be read.
    """
    message = EmailMessage()
    fields: list[tuple[str, str | None]] = [
        ("From", from_),
        ("To", _joined(to)),
        ("Cc", _joined(cc)),
        ("Bcc", _joined(bcc)),
        ("Reply-To", None if reply_to is None else _joined(reply_to)),
        ("Subject", subject),
        *(headers or {}).items(),
    ]
    for name, value in fields:
        if value:
            _set_header(message, name, value)
    _set_body(message, text, html)
    for attachment in attachments:
        _attach(message, *_attachment_parts(attachment))
    return message


def _joined(addresses: Recipients) -> str:
    if isinstance(addresses, str):
        return addresses
    return ", ".join(addresses)


def _set_header(message: EmailMessage, name: str, value: str) -> None:
    try:
        message[name] = value
    except (ValueError, TypeError) as exc:
        raise InvalidMessageError(str(exc), name) from None


def _set_body(message: EmailMessage, text: str | None, html: str | None) -> None:
    if html is None:
        message.set_content(text or "")
        return
    if text is None:
        message.set_content(html, subtype="html")
        return
    message.set_content(text)
    message.add_alternative(html, subtype="html")


def _attachment_parts(attachment: Attachment) -> tuple[str, bytes, str]:
    """Return the file name, content and mimetype of one attachment."""
    if isinstance(attachment, tuple):
        filename, content, mimetype = attachment
        if not isinstance(content, bytes | bytearray):
            raise InvalidMessageError(
                f"the content of {filename!r} must be bytes", "attachments"
            )
        return filename, bytes(content), mimetype or _guessed_type(filename)
    path = Path(attachment)
    return path.name, path.read_bytes(), _guessed_type(path.name)


def _guessed_type(filename: str) -> str:
    guessed, encoding = mimetypes.guess_type(filename, strict=False)
    # A compressed file (report.csv.gz) is its compression's type, not its
    # content's: mimetypes reports gzip as an encoding of text/csv.
    if guessed is None or encoding is not None:
        return _UNKNOWN_TYPE
    return guessed


def _attach(
    message: EmailMessage, filename: str, content: bytes, mimetype: str
) -> None:
    maintype, slash, subtype = mimetype.partition("/")
    if not slash or not maintype or not subtype or "/" in subtype:
        raise InvalidMessageError(
            f"{mimetype!r} is not a type/subtype, for {filename!r}", "attachments"
        )
    try:
        message.add_attachment(
            content, maintype=maintype, subtype=subtype, filename=filename
        )
    except (ValueError, TypeError) as exc:
        raise InvalidMessageError(f"{filename!r}: {exc}", "attachments") from None
