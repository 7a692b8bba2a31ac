"""Checking the header fields of a parsed message (the full path's check step).

What is refused: a header section readers may split into other header fields, a
header that may appear once appearing twice, an invalid field name, and any line
break in header text, raw or decoded (CVE-2024-6923 encoded newlines included).
Raw 8-bit header text is decoded as UTF-8 and rebuilt as a header object, and so is
a header with a line too long to send.
"""

from __future__ import annotations

from collections import Counter
from email.errors import (
    FirstHeaderLineIsContinuationDefect,
    InvalidHeaderDefect,
    MisplacedEnvelopeHeaderDefect,
    MissingHeaderBodySeparatorDefect,
)
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from typing import Any

from ..errors import InvalidMessageError
from .address import unfold
from .body import SURROGATE
from .headers import (
    FIELD_NAME,
    MAX_LINE,
    RECIPIENT_HEADERS,
    SINGLE_MIME_HEADERS,
    UNIQUE_HEADERS,
    reject_line_breaks,
)
from .serialise import EMAIL_ERRORS

__all__ = ["check_header_fields", "check_structure", "replace_headers"]

# After these, readers disagree on which lines are header fields: the email package
# drops a line that another reader takes as the end of the header section.
_AMBIGUOUS_HEADERS = (
    FirstHeaderLineIsContinuationDefect,
    InvalidHeaderDefect,
    MisplacedEnvelopeHeaderDefect,
)


def check_structure(msg: Message, *, envelope_given: bool) -> None:
    """Refuse a header section that readers may split into other header fields.

    Other defects, of the MIME structure or deeper down, are the content's own: a
    multipart without its boundary goes out as it came.
    """
    for defect in msg.defects:
        if isinstance(defect, _AMBIGUOUS_HEADERS):
            reason = type(defect).__name__.removesuffix("Defect")
            raise InvalidMessageError(f"the message is malformed ({reason})")
        if isinstance(defect, MissingHeaderBodySeparatorDefect) and not envelope_given:
            raise InvalidMessageError(
                "the message is malformed (MissingHeaderBodySeparator): a line of "
                "the header section is no header field, so which fields follow it, "
                "and who the recipients are, is up to the reader; give mail_from "
                "and rcpt_to to send it as it is"
            )


def check_header_fields(
    msg: Message, factory: HeaderRegistry, *, recipients_given: bool
) -> bool:
    """Check every part's header fields; decode raw 8-bit header text.

    A header that may appear once appears once: in every part Content-Type and
    Content-Transfer-Encoding; at the top From, Sender and Message-ID, and To, Cc
    and Bcc unless the recipients are given. No header text, raw or decoded, holds
    a line break.

    Returns:
        Whether a header below the top was rebuilt from its decoded text: then
        the parts must be written anew.

    Raises:
        InvalidMessageError: a header appears twice, has an invalid name, holds a
            line break, or holds 8-bit octets that are not UTF-8.
    """
    unique = UNIQUE_HEADERS | (frozenset() if recipients_given else RECIPIENT_HEADERS)
    rebuilt = False
    for part in msg.walk():
        top = part is msg
        single = unique | SINGLE_MIME_HEADERS if top else SINGLE_MIME_HEADERS
        if _check_part(part, factory, single=single) and not top:
            rebuilt = True
    return rebuilt


def _check_part(
    part: Message, factory: HeaderRegistry, *, single: frozenset[str]
) -> bool:
    """Check one part's headers; decode raw 8-bit header text.

    Args:
        single: the lower-case names of the headers that may appear only once.

    Returns:
        Whether a header was rebuilt from its decoded text.
    """
    counts = Counter(name.lower() for name in part)
    for name in part:
        if counts[name.lower()] > 1 and name.lower() in single:
            raise InvalidMessageError("appears more than once; one is allowed", name)
    raw = list(part.raw_items())
    checked = [(name, _checked_value(name, value, factory)) for name, value in raw]
    if any(new is not old for (_, new), (_, old) in zip(checked, raw, strict=True)):
        replace_headers(part, checked)
        return True
    return False


def _checked_value(name: str, value: Any, factory: HeaderRegistry) -> Any:
    """Reject a header whose raw or decoded value could break the header block.

    Returns the value to keep: the same object, or a header object built from the
    decoded text when the raw text holds 8-bit octets or a line too long to send.
    """
    if not FIELD_NAME.fullmatch(name):
        raise InvalidMessageError("is not a valid header field name", repr(name))
    if isinstance(value, BaseHeader):
        _reject_decoded(name, value)
        return value
    text = unfold(value)
    reject_line_breaks(name, text)
    if SURROGATE.search(text):
        try:
            text = text.encode("ascii", "surrogateescape").decode("utf-8")
        except UnicodeError as exc:
            raise InvalidMessageError("holds 8-bit octets, not UTF-8", name) from exc
        reject_line_breaks(name, text)
    too_long = max(map(len, value.splitlines()), default=0) > MAX_LINE - len(name) - 2
    rebuild = too_long or not text.isascii()
    if rebuild or "=?" in text or "*=" in text:
        try:
            header = factory(name, text)
        except EMAIL_ERRORS as exc:
            raise InvalidMessageError(f"cannot be parsed: {exc}", name) from exc
        _reject_decoded(name, header)
        if rebuild:
            return header
    return value


def _reject_decoded(name: str, header: BaseHeader) -> None:
    """Reject a header object whose decoded text or parameters hold a line break."""
    params = getattr(header, "params", {})
    reject_line_breaks(name, str(header), *map(str, params.values()))


def replace_headers(part: Message, headers: list[tuple[str, Any]]) -> None:
    """Give *part* exactly *headers*, in their order, in place of its own."""
    # What deleting each of its headers and set_raw() for each of these leaves
    # behind (the list Message.__init__ makes), without a scan of the list for
    # every name deleted.
    vars(part)["_headers"] = [(name, value) for name, value in headers]
