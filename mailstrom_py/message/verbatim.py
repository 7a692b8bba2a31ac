"""A raw message's own body octets, sent as the caller wrote them.

The email package writes a parsed message back out nearly, but not exactly, as it
came: it adds an empty line before a closing boundary that follows an empty part,
and an empty line after header fields that ran straight into the body. A message
given as bytes or str whose body needs no re-encoding is therefore sent with its
own body; only its header section is written from the checked header fields.
:func:`read_raw` finds where that body starts, as the email package's parser does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.policy import EmailPolicy
from typing import Any

from ..errors import InvalidMessageError
from .serialise import EMAIL_ERRORS

__all__ = ["RawMessage", "read_raw", "serialise_verbatim"]

# A line the email package's parser takes as part of the header section: a field
# (a name, then a colon) or a continuation. "From " lines are refused before this.
_HEADER_LINE = re.compile(rb"[!-9;-~]+:|[ \t]")
_LINE_END = re.compile(rb"\r\n|\r|\n")
# Obsolete syntax to RFC 5322, the start of the body to the email package.
_OBSOLETE_FIELD = re.compile(rb"[!-9;-~]+[ \t]+:")


@dataclass(frozen=True)
class RawMessage:
    """A message given as bytes, and where its body starts.

    Attributes:
        data: the message, its header section in CRLF lines.
        body: the offset in ``data`` where the body starts.
        separated: an empty line ends the header section; otherwise the body
            starts with a line that is no header field, or there is no body.
    """

    data: bytes
    body: int
    separated: bool


def read_raw(data: bytes) -> RawMessage:
    """Find where the header section of *data* ends, as the email package does.

    A leading mbox ``From`` line is no part of the message (RFC 4155) and is
    skipped. Header fields and their continuation lines then run to the first
    empty line, or to the first line that is neither: the body starts there (the
    email package and a reader of RFC 5322 agree on that).

    Args:
        data: a message whose header section has CRLF line ends
            (:func:`~.headers.canonical_line_ends`).

    Raises:
        InvalidMessageError: a line of the header section means one thing to the
            email package and another to other readers: a continuation before
            any field, a ``From`` line after the first line, a colon with no
            name before it, or blanks between a name and its colon.
    """
    position = _line_end(data, 0) if data.startswith(b"From ") else 0
    first = True
    while position < len(data):
        end = _line_end(data, position)
        line = data[position:end]
        if line == b"\r\n":
            return RawMessage(data, end, separated=True)
        if line.startswith(b"From "):
            raise _ambiguous("a 'From ' line (an mbox separator) after the first line")
        if line.startswith(b":"):
            raise _ambiguous("a line with a colon but no field name before it")
        if _OBSOLETE_FIELD.match(line):
            raise _ambiguous("a field with blanks before its colon (RFC 5322 §4.5)")
        if first and line.startswith((b" ", b"\t")):
            raise _ambiguous("a continuation line before any field")
        if not _HEADER_LINE.match(line):
            return RawMessage(data, position, separated=False)
        first = False
        position = end
    return RawMessage(data, len(data), separated=False)


def serialise_verbatim(
    msg: Message, raw: RawMessage, policy: EmailPolicy[Any]
) -> bytes:
    """Return *msg*'s top-level header fields, then *raw*'s body as it is, in CRLF.

    The header fields are written as the email package's generator writes them.
    Every CR or LF in the body that is not part of a CRLF becomes CRLF, as the
    generator does for text; the caller must have made sure that any other part
    holds none. The empty line after the header fields is written when the
    message had one, or has no body.

    Raises:
        InvalidMessageError: the email package cannot write a header field.
    """
    try:
        head = b"".join(
            policy.fold_binary(name, value) for name, value in msg.raw_items()
        )
    except EMAIL_ERRORS as exc:
        raise InvalidMessageError(f"the message cannot be serialised: {exc}") from exc
    body = raw.data[raw.body :]
    pairs = body.count(b"\r\n")
    if body.count(b"\r") != pairs or body.count(b"\n") != pairs:
        body = _LINE_END.sub(b"\r\n", body)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return head + (b"\r\n" if raw.separated or not body else b"") + body


def _line_end(data: bytes, position: int) -> int:
    """The offset just after the CRLF that ends the line at *position*."""
    end = data.find(b"\r\n", position)
    return len(data) if end < 0 else end + 2


def _ambiguous(what: str) -> InvalidMessageError:
    return InvalidMessageError(
        f"the header section holds {what}: readers disagree on the header fields"
    )
