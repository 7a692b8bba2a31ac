"""Body encoding: make every leaf part safe to send as SMTP DATA.

A part whose octets cannot go as they stand (8-bit data the server may not accept, a
NUL, a line over 998 octets, a bare CR or LF in data that is not text) is re-encoded
as quoted-printable (text) or base64 (anything else).
"""

from __future__ import annotations

import base64
import binascii
import re
from email.message import Message

from ..errors import InvalidMessageError
from .headers import MAX_LINE

__all__ = ["SURROGATE", "encode_body", "has_bare_line_end", "has_long_line"]

#: What a bytes parse turns each octet above 127 into.
SURROGATE = re.compile("[\udc80-\udcff]")
_NEWLINE = re.compile(rb"\r\n|\r|\n")
_PLAIN = ("7bit", "8bit", "binary")


def encode_body(msg: Message, *, allow_8bit: bool) -> bool:
    """Re-encode every leaf part of *msg* whose body cannot be sent as it stands.

    Returns:
        Whether anything changed: a part's body, or a header that says how it is
        encoded.

    Raises:
        InvalidMessageError: a part's transfer encoding is unknown and its data is
            unsafe, its text cannot be encoded in its declared charset, or a
            multipart whose parts cannot be found (no boundary) holds data that
            would need re-encoding.
    """
    encoded = relabelled = False
    for part in msg.walk():
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if not part.is_multipart():
            encoded = _encode_leaf(part, cte, allow_8bit=allow_8bit) or encoded
        elif cte in ("8bit", "binary") and not allow_8bit:
            part.replace_header("Content-Transfer-Encoding", "7bit")
            relabelled = True
    if encoded and "MIME-Version" not in msg:
        msg.set_raw("MIME-Version", "1.0")
    return encoded or relabelled


def _encode_leaf(part: Message, cte: str, *, allow_8bit: bool) -> bool:
    """Re-encode one leaf part if it needs it; return whether it was."""
    wire = _payload_bytes(part)
    if wire is None:
        return False
    text = part.get_content_maintype() == "text"
    short = b"\0" not in wire and not has_long_line(wire)
    if part.get_content_maintype() == "multipart":
        _check_partless(wire, short=short, allow_8bit=allow_8bit)
        return False
    if short and wire.isascii() and _sendable(wire, cte, text=text):
        return False
    content = _content(part, wire, cte)
    if content is None:
        return False
    if text and cte in _PLAIN and _kept_8bit(part, wire, short and allow_8bit):
        return True
    if text:
        lines = _NEWLINE.sub(b"\n", content)
        qp = binascii.b2a_qp(lines, istext=True).decode("ascii")
        _set_body(part, qp, "quoted-printable")
    else:
        _set_body(part, base64.encodebytes(content).decode("ascii"), "base64")
    return True


def _check_partless(wire: bytes, *, short: bool, allow_8bit: bool) -> None:
    """Refuse a multipart whose parts the parser cannot find, unless it may go as is.

    Without its parts (RFC 2046 §5.1.1: no boundary, or none in the body) nothing
    in it can be re-encoded.
    """
    if not (short and (wire.isascii() or allow_8bit)):
        reason = "has no parts to be found, and 8-bit data or long lines in them"
        raise InvalidMessageError(reason, "Content-Type")


def _kept_8bit(part: Message, wire: bytes, keep: bool) -> bool:
    """Label 8-bit text with a charset; keep it 8-bit if *keep*, and say if it was."""
    if not wire.isascii() and part.get_param("charset") is None:
        part.set_param("charset", _guess_charset(wire))
    if keep:
        _set_body(part, wire.decode("ascii", "surrogateescape"), "8bit")
    return keep


def _sendable(wire: bytes, cte: str, *, text: bool) -> bool:
    """Whether a short ASCII body can go as it stands under its encoding."""
    if cte not in _PLAIN:
        return True
    # Text lines end in CRLF whatever they ended in; other data keeps its octets
    # exactly, so a bare CR or LF there means base64.
    return text or (cte != "binary" and not has_bare_line_end(wire))


def _content(part: Message, wire: bytes, cte: str) -> bytes | None:
    """The octets a part's body stands for; ``None`` if they cannot be had."""
    if cte in _PLAIN:
        return wire
    if cte in ("quoted-printable", "base64"):
        content = part.get_payload(decode=True)
        return content if isinstance(content, bytes) else None
    reason = f"is {cte!r}, unknown, so its 8-bit data or long lines stay unsafe"
    raise InvalidMessageError(reason, "Content-Transfer-Encoding")


def has_bare_line_end(data: bytes) -> bool:
    """Return whether *data* holds a CR or LF that is not part of a CRLF."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def has_long_line(data: bytes) -> bool:
    """Return whether a line of *data*, split at any line end, is over 998 octets."""
    # A line between CRs and LFs lies within one between LFs: if none of those
    # is too long, no line is (splitting at LF alone is the cheaper split).
    if len(data) <= MAX_LINE or max(map(len, data.split(b"\n"))) <= MAX_LINE:
        return False
    return max(map(len, _NEWLINE.split(data))) > MAX_LINE


def _payload_bytes(part: Message) -> bytes | None:
    """Return a leaf part's body as it stands on the wire, before line-end changes."""
    # get_payload() decodes surrogate-escaped octets with the declared charset and
    # errors="replace"; like the stdlib generator, this needs the stored octets.
    payload = getattr(part, "_payload", None)
    if payload is None:
        return None
    if not isinstance(payload, str):
        raise InvalidMessageError("holds a payload that is not text", "body")
    if payload.isascii() or SURROGATE.search(payload):
        return payload.encode("ascii", "surrogateescape")
    # Characters rather than octets come from str input: encode them as labelled.
    charset = part.get_param("charset")
    try:
        return payload.encode(charset if isinstance(charset, str) else "utf-8")
    except (LookupError, UnicodeError) as exc:
        raise InvalidMessageError(f"cannot be encoded as {charset!r}", "body") from exc


def _guess_charset(content: bytes) -> str:
    try:
        content.decode("utf-8")
    except UnicodeError:
        return "unknown-8bit"
    return "utf-8"


def _set_body(part: Message, payload: str, cte: str) -> None:
    part.set_payload(payload)
    if "Content-Transfer-Encoding" in part:
        part.replace_header("Content-Transfer-Encoding", cte)
    else:
        part["Content-Transfer-Encoding"] = cte
