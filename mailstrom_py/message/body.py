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
from .fields import MAX_LINE

__all__ = ["SURROGATE", "encode_body", "has_bare_line_end", "has_long_line"]

#: What a bytes parse turns each octet above 127 into.
SURROGATE = re.compile("[\udc80-\udcff]")
_NEWLINE = re.compile(rb"\r\n|\r|\n")


def encode_body(msg: Message, *, allow_8bit: bool) -> None:
    """Re-encode every leaf part of *msg* whose body cannot be sent as it stands.

    Raises:
        InvalidMessageError: a part's transfer encoding is unknown and its data is
            unsafe, or its text cannot be encoded in its declared charset.
    """
    changed = False
    for part in msg.walk():
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if part.is_multipart() and cte in ("8bit", "binary") and not allow_8bit:
            part.replace_header("Content-Transfer-Encoding", "7bit")
        wire = None if part.is_multipart() else _payload_bytes(part)
        if wire is None:
            continue
        text = part.get_content_maintype() == "text"
        short = b"\0" not in wire and not has_long_line(wire)
        if cte in ("quoted-printable", "base64"):
            if short and wire.isascii():
                continue
            content = part.get_payload(decode=True)
            if not isinstance(content, bytes):
                continue
        elif cte in ("7bit", "8bit", "binary"):
            # Text lines end in CRLF whatever they ended in; other data keeps its octets
            # exactly, so a bare CR or LF there means base64.
            exact = text or (cte != "binary" and not has_bare_line_end(wire))
            if short and wire.isascii() and exact:
                continue
            content = wire
            if text and not wire.isascii() and part.get_param("charset") is None:
                part.set_param("charset", _guess_charset(wire))
            if text and allow_8bit and short:
                _set_body(part, wire.decode("ascii", "surrogateescape"), "8bit")
                changed = True
                continue
        elif short and wire.isascii():
            continue
        else:
            reason = f"is {cte!r}, unknown, so its 8-bit data or long lines stay unsafe"
            raise InvalidMessageError(reason, "Content-Transfer-Encoding")
        if text:
            lines = _NEWLINE.sub(b"\n", content)
            qp = binascii.b2a_qp(lines, istext=True).decode("ascii")
            _set_body(part, qp, "quoted-printable")
        else:
            _set_body(part, base64.encodebytes(content).decode("ascii"), "base64")
        changed = True
    if changed and "MIME-Version" not in msg:
        msg.set_raw("MIME-Version", "1.0")


def has_bare_line_end(data: bytes) -> bool:
    """Return whether *data* holds a CR or LF that is not part of a CRLF."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def has_long_line(data: bytes) -> bool:
    """Return whether a line of *data*, split at any line end, is over 998 octets."""
    return len(data) > MAX_LINE and max(map(len, _NEWLINE.split(data))) > MAX_LINE


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
