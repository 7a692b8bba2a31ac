"""The header section: its line ends, its fields, and the limits on both.

The full path in :mod:`.fullpath` and the fast one in :mod:`.fastpath` must
read a header section alike and give identical bytes: the limits, the reading of
header fields as the email package reads them, and the header checks live here,
once.
"""

from __future__ import annotations

import re

from ..errors import InvalidMessageError
from .address import unfold

__all__ = [
    "FIELD_NAME",
    "FOLD_AT",
    "LINE_BREAKING",
    "MAX_LINE",
    "RECIPIENT_HEADERS",
    "SINGLE_HEADERS",
    "SINGLE_MIME_HEADERS",
    "UNIQUE_HEADERS",
    "canonical_line_ends",
    "is_text_type",
    "reject_line_breaks",
    "split_header_block",
]

#: RFC 5322 §2.1.1 and RFC 5321 §4.5.3.1.6: octets in a line, not counting its CRLF.
MAX_LINE = 998
#: RFC 5322 §2.1.1: the line length that folding aims for.
FOLD_AT = 78

# RFC 5322 §3.6 allows one of each. A second one is merely non-conforming, except
# where it leaves open what matters: who wrote the message and which id it has
# (UNIQUE), who gets it when the envelope is read from the headers (RECIPIENT), and
# how a part's body is to be read (SINGLE_MIME).
SINGLE_HEADERS = frozenset(
    {"from", "sender", "reply-to", "to", "cc", "bcc", "subject", "date", "message-id"}
    | {"in-reply-to", "references", "mime-version"}
)
UNIQUE_HEADERS = frozenset({"from", "sender", "message-id"})
RECIPIENT_HEADERS = frozenset({"to", "cc", "bcc"})
SINGLE_MIME_HEADERS = frozenset({"content-type", "content-transfer-encoding"})
FIELD_NAME = re.compile(r"[!-9;-~]+")
# CR, LF and NUL, plus what str.splitlines() breaks on: when folding, the email package
# (3.11) splits header values with it, turning any of these into a real line break.
LINE_BREAKING = re.compile("[\x00\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")

# Where the email package ends a line; a CR or LF alone too (it splits at each).
_LINE_END = re.compile(rb"\r\n|\r|\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# One header field as the email package reads it: the name, then the value without
# the blanks after the colon and without the final CRLF. Only printable ASCII and
# blanks; a continuation line starts with a blank. The possessive [ \t]*+ keeps the
# match linear.
_FIELD = re.compile(r"([!-9;-~]+):[ \t]*+([\t -~]*(?:\r\n[ \t][\t -~]*)*)\r\n")
_MIME_ATOM = r"[!#$%&'*+.^_`{|}~0-9A-Za-z-]+"
_PARAMETER = rf';[ \t]*{_MIME_ATOM}=(?:{_MIME_ATOM}|"[ !#-\[\]-~]*")[ \t]*'
_TEXT_TYPE = re.compile(rf"[ \t]*(?i:text)/{_MIME_ATOM}[ \t]*(?:{_PARAMETER})*;?[ \t]*")


def canonical_line_ends(data: bytes) -> bytes:
    """Check how a message's header section ends its lines; return it in CRLF.

    The header section runs to its first empty line, its lines split where the email
    package splits them: at CRLF, at CR alone and at LF alone. Every line must end
    the same way, in CRLF or in LF alone, so that a reader who splits only at CRLF
    (RFC 5322 §2.2) sees the same header fields as one who splits at every CR or LF.
    A message whose header section ends in LF alone is taken as written with Unix
    line ends: every LF that does not follow a CR becomes CRLF, body included.
    Otherwise *data* is returned as it is; a bare CR or LF in its body is left to
    the body rules.

    Raises:
        InvalidMessageError: a header line ends in CR alone, or the header section
            mixes lines ending in LF alone with lines ending in CRLF; ``field``
            names the header whose line it is.
    """
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 4]
    pairs = head.count(b"\r\n")
    if head.count(b"\r") == pairs == head.count(b"\n"):
        return data  # the commonest case: CRLF throughout the header section
    end = data.find(b"\n\n")
    if b"\r" not in (data if end < 0 else data[: end + 2]):
        return _BARE_LF.sub(b"\r\n", data)
    return _checked_line_ends(data)


def _checked_line_ends(data: bytes) -> bytes:
    """Read the header section's line ends one by one; see canonical_line_ends()."""
    field = first = None
    start = 0
    for match in _LINE_END.finditer(data):
        line, end = data[start : match.start()], match.group()
        if line[:1] not in (b"", b" ", b"\t"):
            name = line.partition(b":")[0].decode("ascii", "replace")
            field = name if b":" in line and FIELD_NAME.fullmatch(name) else None
        first = first or end
        if end == b"\r" or end != first:
            raise InvalidMessageError(_line_end_reason(end, first), field)
        if not line:
            break  # the empty line that ends the header section
        start = match.end()
    return data if first != b"\n" else _BARE_LF.sub(b"\r\n", data)


def _line_end_reason(end: bytes, first: bytes) -> str:
    rule = (
        "header lines must all end in CRLF, or all in LF alone, or a reader "
        "could see other header fields"
    )
    if end == b"\r":
        return f"ends a line in CR alone: {rule}"
    ending = {b"\n": "LF alone", b"\r\n": "CRLF"}
    return (
        f"ends a line in {ending[end]} where the first header line ends in "
        f"{ending[first]}: {rule}"
    )


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
