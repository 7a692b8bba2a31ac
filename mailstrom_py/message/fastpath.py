"""The fast way to prepare a message that is already clean.

Most messages given as bytes or str are one ASCII text part with CRLF (or LF-only)
lines of at most 998 octets and plain header fields. For those, the full preparation
(parse, check, serialise, parse again) gives back the caller's own octets with Bcc
removed, Date and Message-ID added, and a few header spellings normalised.
:func:`prepare_clean` produces exactly those bytes without the email package's parser
and generator, with the same address and header checks, and returns ``None`` for
anything it is not sure about, so that the full preparation decides (and raises).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import HeaderRegistry

from ..errors import InvalidMessageError
from .address import unfold
from .envelope import Envelope, read_envelope
from .fields import (
    MAX_LINE,
    SINGLE_HEADERS,
    SINGLE_MIME_HEADERS,
    canonical_line_ends,
    complete_headers,
    is_text_type,
    split_header_block,
)

__all__ = ["Clean", "prepare_clean"]

_SINGLE = SINGLE_HEADERS | SINGLE_MIME_HEADERS
_ENCODING = re.compile(r"[ \t]*(?i:7bit|8bit|binary|quoted-printable|base64)[ \t]*")


@dataclass(frozen=True)
class Clean:
    """What the fast preparation made of a clean message.

    Attributes:
        message_id: the Message-ID without angle brackets.
        envelope: the envelope and the headers as read from the message.
        data: the bytes to send, identical to what the full preparation gives.
    """

    message_id: str
    envelope: Envelope
    data: bytes


def prepare_clean(
    message: bytes | bytearray | str,
    factory: HeaderRegistry,
    *,
    helo_name: str,
    mail_from: str | None,
    rcpt_to: Sequence[str] | None,
    allow_null_sender: bool,
    now: datetime | None,
    message_id: str | None,
) -> Clean | None:
    """Prepare a clean single-part ASCII text message, or return ``None``.

    First of all, the header section's line ends are checked and a message written
    with LF alone is turned into CRLF, as in the full preparation
    (:func:`~mailstrom_py._fields.canonical_line_ends`, which raises).

    Accepted: ASCII only; line ends all CRLF after that; no NUL; lines of at most 998
    octets; a header block of well-formed fields (folding allowed) ending in an
    empty line; no encoded word or RFC 2231 parameter (``=?``, ``*=``); at most one
    of each header RFC 5322 §3.6 limits; no Content-Type, or a ``text/*`` one of
    plain parameters; a well-known Content-Transfer-Encoding; addresses that pass
    the same checks as in the full preparation, none of them rewritten.

    The arguments are those of :func:`mailstrom_py.message.prepare_email`; *factory*
    parses the address headers the simple reader cannot.

    Returns:
        The prepared message, exactly as the full preparation would give it, or
        ``None`` when the full preparation must decide, also for every other error.

    Raises:
        InvalidMessageError: a bare CR or LF in the header section could split a
            header line.
    """
    if isinstance(message, str):
        message = message.encode("utf-8", "surrogatepass")
    data = canonical_line_ends(bytes(message))
    if not data.isascii() or b"\0" in data:
        return None
    if not _plain_lines(data):
        return None
    split = data.find(b"\r\n\r\n")
    if split < 0:
        return None
    fields = _read_fields(data[: split + 2].decode("ascii"))
    if fields is None:
        return None
    try:
        envelope = read_envelope(
            fields,
            factory,
            mail_from=mail_from,
            rcpt_to=rcpt_to,
            allow_null_sender=allow_null_sender,
        )
        # Only a non-ASCII address is ever rewritten (to its A-label); should one
        # be, it is a header object that the email package folds its own way.
        if any(type(value) is not str for _, value in envelope.headers):
            return None
        headers, msg_id = complete_headers(
            envelope.headers, now=now, message_id=message_id, helo_name=helo_name
        )
    except InvalidMessageError:
        return None
    head = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if not head.isascii():
        return None
    if len(head) > MAX_LINE and max(map(len, head.split("\r\n"))) > MAX_LINE:
        return None
    body = data[split + 4 :]
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return Clean(msg_id, envelope, head.encode("ascii") + b"\r\n" + body)


def _plain_lines(data: bytes) -> bool:
    """Return whether every line of *data* ends in CRLF and is at most 998 octets.

    The last line may lack its line end. One split at every kind of line end
    serves both checks: CRLF is the only two-octet line end, so the line ends
    are all CRLF exactly when they took two octets each.
    """
    lengths = list(map(len, data.splitlines()))
    ends = len(lengths) if data.endswith((b"\r", b"\n")) else len(lengths) - 1
    if len(data) - sum(lengths) != 2 * ends:
        return False
    return not lengths or max(lengths) <= MAX_LINE


def _read_fields(block: str) -> list[tuple[str, str]] | None:
    """Split a CRLF header block into fields; ``None`` unless every one is plain."""
    fields = split_header_block(block)
    if fields is None:
        return None
    # Most blocks hold no "=?" or "*=" at all; only those are searched field by field.
    if ("=?" in block or "*=" in block) and any(
        "=?" in value or "*=" in value for _, value in fields
    ):
        return None
    keys = [name.lower() for name, _ in fields]
    if len(set(keys)) != len(keys):
        single = [key for key in keys if key in _SINGLE]
        if len(set(single)) != len(single):
            return None
    # Text lines end in CRLF whatever they ended in, so the full preparation keeps
    # the octets of a text part (RFC 2045 §5.1) and so does this.
    if "content-type" in keys:
        content_type = fields[keys.index("content-type")][1]
        if not is_text_type(content_type):
            return None
    if "content-transfer-encoding" in keys:
        encoding = fields[keys.index("content-transfer-encoding")][1]
        if not _ENCODING.fullmatch(unfold(encoding)):
            return None
    # The full preparation rebuilds a field with a line this long, and folds it;
    # a block of at most 998 octets cannot hold one.
    if len(block) > MAX_LINE and any(
        max(map(len, value.split("\r\n"))) > MAX_LINE - len(name) - 2
        for name, value in fields
    ):
        return None
    return fields
