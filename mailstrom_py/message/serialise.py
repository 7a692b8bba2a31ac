"""Serialising a checked message to SMTP bytes, and verifying those bytes.

The email package folds every header object through its general folding algorithm,
and reading the bytes back parses every header and part again. Both are exact but
slow for the common case: a header that fits on its line as it stands, and a single
text part. :class:`SmtpPolicy` and :func:`verify` take a shortcut there, with results
identical to the general way (the shortcut's conditions imply it; tests compare
both), and use the general way for everything else.
"""

from __future__ import annotations

import io
import sys
from email import errors as email_errors
from email.errors import MessageError
from email.generator import BytesGenerator
from email.headerregistry import BaseHeader
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from typing import TYPE_CHECKING, Any

from ..errors import InvalidMessageError
from .body import has_bare_line_end
from .fields import LINE_BREAKING, MAX_LINE, is_text_type, split_header_block

if TYPE_CHECKING:
    _EmailPolicy = EmailPolicy[Any]
else:
    _EmailPolicy = EmailPolicy

__all__ = [
    "EMAIL_ERRORS",
    "FATAL_DEFECTS",
    "SMTP",
    "SmtpPolicy",
    "serialise",
    "verify",
]

#: What the email package raises on input it cannot handle.
EMAIL_ERRORS = (ValueError, LookupError, TypeError, AttributeError, MessageError)
#: After these the parse is a guess: a line without a colon ends the headers early,
#: a multipart without its boundary has no parts.
FATAL_DEFECTS = (
    email_errors.MissingHeaderBodySeparatorDefect,
    email_errors.FirstHeaderLineIsContinuationDefect,
    email_errors.MisplacedEnvelopeHeaderDefect,
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.InvalidMultipartContentTransferEncodingDefect,
)
# Parse-tree tokens that the folding algorithm may encode even when they fit.
_ENCODABLE_TOKENS = frozenset({"ptext", "vtext", "mime-parameters"})


class SmtpPolicy(_EmailPolicy):
    """``email.policy.SMTP`` with a quick fold for a header that needs no folding.

    The general algorithm writes a header object's parse tree as it stands when the
    whole tree is ASCII without line breaks, needs no encoded word, and fits in
    ``max_line_length`` after ``Name: ``; this policy writes exactly that line
    without running the algorithm.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        """Fold a header for a binary generator; see :class:`EmailPolicy`."""
        if isinstance(value, BaseHeader):
            line = _fitting_line(value, self.max_line_length or sys.maxsize)
            if line is not None:
                return (line + self.linesep).encode("ascii")
        return super().fold_binary(name, value)


#: Like ``email.policy.SMTP``: the default policy with CRLF line ends.
SMTP = SmtpPolicy(linesep="\r\n")


def _fitting_line(header: BaseHeader, limit: int) -> str | None:
    """Return ``Name: value`` as the folding algorithm would write it, or ``None``.

    The algorithm folds ``Name:``, a space and the header's parse tree (a private
    attribute: without it, or if it changes shape, this declines); a whole tree
    that fits, is ASCII, holds no line break and is not a token it may encode goes
    out as ``str(tree)`` (CPython 3.11 to 3.13).
    """
    tree = getattr(header, "_parse_tree", None)
    token_type = getattr(tree, "token_type", None)
    if not isinstance(tree, list) or not tree or not isinstance(token_type, str):
        return None
    if token_type in _ENCODABLE_TOKENS:
        return None
    line = f"{header.name}: {tree}"
    if len(line) > limit or not line.isascii() or LINE_BREAKING.search(line):
        return None
    return line


def serialise(msg: Message, policy: EmailPolicy[Any]) -> bytes:
    """Return *msg* as bytes that end with CRLF.

    Raises:
        InvalidMessageError: the email package cannot serialise it.
    """
    buffer = io.BytesIO()
    try:
        BytesGenerator(buffer, policy=policy).flatten(msg, unixfrom=False)
    except EMAIL_ERRORS as exc:
        raise InvalidMessageError(f"the message cannot be serialised: {exc}") from exc
    data = buffer.getvalue()
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def verify(
    data: bytes, msg: Message, policy: EmailPolicy[Any], *, ascii_only: bool
) -> None:
    """Check the final bytes against the promises of ``PreparedEmail``.

    Serialising must not change what the message says: parsed again, the bytes must
    show the same parts with the same header names, so nothing was injected, and no
    structural defect that the message did not have already.

    Raises:
        InvalidMessageError: a bare CR or LF, a line over 998 octets, 8-bit data
            where *ascii_only*, or parts or header names that differ from *msg*.
    """
    if has_bare_line_end(data):
        raise InvalidMessageError("serialising left a bare CR or LF", "body")
    lines = data.split(b"\r\n")
    if max(map(len, lines)) > MAX_LINE:
        raise InvalidMessageError(*_long_line(lines))
    if ascii_only and not data.isascii():
        raise InvalidMessageError("8-bit text remains outside any part", "body")
    expected = [[name.lower() for name in part] for part in msg.walk()]
    if len(expected) == 1 and _single_text_part(data) == expected[0]:
        return
    reparsed = BytesParser(policy=policy).parsebytes(data)
    found = [[name.lower() for name in part] for part in reparsed.walk()]
    if found != expected or not _fatal(reparsed) <= _fatal(msg):
        raise InvalidMessageError("serialising changed the header fields (injection?)")


def _fatal(msg: Message) -> set[type[Exception]]:
    """The kinds of defect in *msg*'s structure after which a parse is a guess."""
    return {type(d) for d in msg.defects if isinstance(d, FATAL_DEFECTS)}


def _single_text_part(data: bytes) -> list[str] | None:
    """The header names the email package reads in *data*, if it is one text part.

    ``None`` unless the header block is plain fields (so the package reads the same
    names, without defects) and any Content-Type says ``text/*`` (so the body is one
    leaf, not parts); then a full parse would find exactly these names.
    """
    split = data.find(b"\r\n\r\n")
    if split < 0 or not data[:split].isascii():
        return None
    fields = split_header_block(data[: split + 2].decode("ascii"))
    if fields is None:
        return None
    for name, value in fields:
        if name.lower() == "content-type" and not is_text_type(value):
            return None
    return [name.lower() for name, _ in fields]


def _long_line(lines: list[bytes]) -> tuple[str, str]:
    """Return the error reason and field for the first line that is too long."""
    name, in_header = "body", True
    for line in lines:
        in_header = in_header and bool(line)
        if not in_header:
            name = "body"
        elif line[:1] not in (b" ", b"\t"):
            name = line.partition(b":")[0].decode("ascii", "replace")
        if len(line) > MAX_LINE:
            break
    return f"a line is over {MAX_LINE} octets and cannot be folded shorter", name
