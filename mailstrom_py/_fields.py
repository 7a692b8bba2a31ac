"""Header field rules that both ways of preparing a message share.

The full preparation in :mod:`mailstrom_py.message` and the fast one in
:mod:`mailstrom_py._fastpath` must give identical bytes: the limits, the header
checks and the completion of Date and Message-ID live here, once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from ._address import domain_to_ascii, unfold
from .errors import InvalidMessageError

__all__ = [
    "FIELD_NAME",
    "FOLD_AT",
    "LINE_BREAKING",
    "MAX_LINE",
    "SINGLE_HEADERS",
    "SINGLE_MIME_HEADERS",
    "complete_headers",
    "is_text_type",
    "reject_line_breaks",
    "split_header_block",
]

#: RFC 5322 §2.1.1 and RFC 5321 §4.5.3.1.6: octets in a line, not counting its CRLF.
MAX_LINE = 998
#: RFC 5322 §2.1.1: the line length that folding aims for.
FOLD_AT = 78

# RFC 5322 §3.6 allows one of each; a second one makes the message ambiguous.
SINGLE_HEADERS = frozenset(
    {"from", "sender", "reply-to", "to", "cc", "bcc", "subject", "date", "message-id"}
    | {"in-reply-to", "references", "mime-version"}
)
SINGLE_MIME_HEADERS = frozenset({"content-type", "content-transfer-encoding"})
FIELD_NAME = re.compile(r"[!-9;-~]+")
# CR, LF and NUL, plus what str.splitlines() breaks on: when folding, the email package
# (3.11) splits header values with it, turning any of these into a real line break.
LINE_BREAKING = re.compile("[\x00\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")

# One header field as the email package reads it: the name, then the value without
# the blanks after the colon and without the final CRLF. Only printable ASCII and
# blanks; a continuation line starts with a blank. The possessive [ \t]*+ keeps the
# match linear.
_FIELD = re.compile(r"([!-9;-~]+):[ \t]*+([\t -~]*(?:\r\n[ \t][\t -~]*)*)\r\n")
_MIME_ATOM = r"[!#$%&'*+.^_`{|}~0-9A-Za-z-]+"
_PARAMETER = rf';[ \t]*{_MIME_ATOM}=(?:{_MIME_ATOM}|"[ !#-\[\]-~]*")[ \t]*'
_TEXT_TYPE = re.compile(rf"[ \t]*(?i:text)/{_MIME_ATOM}[ \t]*(?:{_PARAMETER})*;?[ \t]*")
# The email package folds a long msg-id into encoded words, which breaks threading.
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_ID_TEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_MSG_ID = re.compile(rf"<{_ID_TEXT}@(?:{_ID_TEXT}|\[[!-Z^-~]*\])>")


def split_header_block(block: str) -> list[tuple[str, str]] | None:
    """Read a header block of CRLF lines as the email package reads it.

    Returns:
        Each field's name and raw value (the blanks after the colon and the final
        CRLF removed, folding kept), or ``None`` unless every line is a field or a
        continuation of printable ASCII and blanks, each ending in CRLF.
    """
    fields = []
    position = 0
    while position < len(block):
        match = _FIELD.match(block, position)
        if match is None:
            return None
        fields.append((match[1], match[2]))
        position = match.end()
    return fields if fields else None


def is_text_type(value: str) -> bool:
    """Return whether a raw Content-Type says ``text/*`` with plain parameters.

    The email package reads such a part as one leaf of text: never a multipart,
    never an attached message (RFC 2045 §5.1).
    """
    return _TEXT_TYPE.fullmatch(unfold(value)) is not None


def reject_line_breaks(name: str, *texts: str) -> None:
    """Raise if a header text holds anything that could end its line.

    Raises:
        InvalidMessageError: a text holds CR, LF, NUL or another line break.
    """
    for text in texts:
        found = LINE_BREAKING.search(text)
        if found:
            why = "CR, LF, NUL and other line breaks are refused, even encoded"
            raise InvalidMessageError(f"contains {found.group()!r}: {why}", name)


def complete_headers(
    headers: Iterable[tuple[str, Any]],
    *,
    now: datetime | None,
    message_id: str | None,
    helo_name: str,
) -> tuple[list[tuple[str, Any]], str]:
    """Add Date and Message-ID when missing; check and tidy the msg-id headers.

    A Message-ID is reduced to its one ``<id-left@id-right>``; In-Reply-To and
    References are refolded at spaces. Other values are kept as they are.

    Returns:
        The headers to send, and the message id without angle brackets.

    Raises:
        InvalidMessageError: the Message-ID header or *message_id* is not one
            ``id-left@id-right``, or *helo_name* is not a valid domain.
    """
    headers = list(headers)
    names = {name.lower() for name, _ in headers}
    if "date" not in names:
        when = now if now is not None else datetime.now(UTC)
        headers.append(("Date", format_datetime(when)))
    if "message-id" not in names:
        headers.append(("Message-ID", f"<{_new_message_id(message_id, helo_name)}>"))
    headers = [(name, _id_header(name, value)) for name, value in headers]
    msg_id = next(v for n, v in headers if n.lower() == "message-id").strip("<>")
    return headers, msg_id


def _new_message_id(explicit: str | None, helo_name: str) -> str:
    if explicit is None:
        return f"{uuid.uuid4().hex}@{domain_to_ascii(helo_name, 'helo_name')}"
    if not isinstance(explicit, str) or not _MSG_ID.fullmatch(f"<{explicit}>"):
        raise InvalidMessageError(f"{explicit!r} is not id-left@id-right", "message_id")
    return explicit


def _id_header(name: str, value: Any) -> Any:
    """Return a checked Message-ID, or In-Reply-To and References folded at spaces."""
    if name.lower() == "message-id":
        match = _MSG_ID.fullmatch(str(unfold(value)).strip())
        if not match:
            shown = str(value)[:80]
            raise InvalidMessageError(f"{shown!r} is not one <id-left@id-right>", name)
        return match.group()
    if name.lower() not in _ID_HEADERS or not str(value).isascii():
        return value
    words = str(unfold(value)).split()
    lines = [" ".join(words[:1])]
    for word in words[1:]:
        if len(name) + len(lines[-1]) + len(word) + 3 > FOLD_AT:
            lines.append(word)
        else:
            lines[-1] += " " + word
    return "\r\n ".join(lines)
