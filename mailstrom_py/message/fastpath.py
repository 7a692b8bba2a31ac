"""The fast path of preparation: a clean message, without the email package.

Most messages given as bytes or str are one ASCII text part with CRLF (or LF-only)
lines of at most 998 octets and plain header fields. For those, the full path
(:mod:`.fullpath`: parse, check, serialise, parse again) gives back the caller's own
octets with Bcc removed, Date and Message-ID added, and a few header spellings
normalised. :func:`prepare_fast` produces exactly those bytes without the email
package's parser and generator, with the same address and header checks, and
returns ``None`` for anything it is not sure about, so that the full path decides
(and raises).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from email.headerregistry import HeaderRegistry

from ..errors import InvalidMessageError
from .address import unfold
from .completion import complete_headers
from .envelope import Envelope, read_envelope
from .headers import (
    MAX_LINE,
    SINGLE_HEADERS,
    SINGLE_MIME_HEADERS,
    canonical_line_ends,
    is_text_type,
    split_header_block,
)
from .prepared import PreparedEmail

__all__ = ["prepare_fast"]

_SINGLE = SINGLE_HEADERS | SINGLE_MIME_HEADERS
_ENCODING = re.compile(r"[ \t]*(?i:7bit|8bit|binary|quoted-printable|base64)[ \t]*")


def prepare_fast(
    message: bytes | bytearray | str,
    factory: HeaderRegistry,
    *,
    mail_from: str | None,
    rcpt_to: Sequence[str] | None,
    allow_null_sender: bool,
    now: datetime,
    new_message_id: Callable[[], str],
    default_from: str | None = None,
) -> PreparedEmail | None:
    """Prepare a clean single-part ASCII text message, or return ``None``.

    First of all, the header section's line ends are checked and a message written
    with LF alone is turned into CRLF, as in the full path
    (:func:`~.headers.canonical_line_ends`, which raises).

    Accepted: ASCII only; line ends all CRLF after that; no NUL; lines of at most 998
    octets; a header block of well-formed fields (folding allowed) ending in an
    empty line; no encoded word or RFC 2231 parameter (``=?``, ``*=``); at most one
    of each header RFC 5322 §3.6 limits; no Content-Type, or a ``text/*`` one of
    plain parameters; a well-known Content-Transfer-Encoding; addresses that pass
    the same checks as in the full path, none of them rewritten.

    The arguments are those of :func:`.fullpath.prepare_full` but *allow_8bit*,
    which makes no difference to an ASCII message; *factory* parses the address
    headers the simple reader cannot.

    Returns:
        The prepared message, exactly as the full path would give it, or ``None``
        when the full path must decide, also for every other error.

    Raises:
        InvalidMessageError: a bare CR or LF in the header section could split a
            header line.
    """
    if isinstance(message, str):
        message = message.encode("utf-8", "surrogatepass")
    data = canonical_line_ends(bytes(message))
    split = _end_of_plain_header(data)
    if split is None:
        return None
    fields = _plain_fields(data[: split + 2].decode("ascii"))
    if fields is None:
        return None
    try:
        envelope = read_envelope(
            fields,
            factory,
            mail_from=mail_from,
            rcpt_to=rcpt_to,
            allow_null_sender=allow_null_sender,
            default_from=default_from,
        )
        completed = _completed_head(envelope, now, new_message_id)
    except InvalidMessageError:
        return None
    if completed is None:
        return None
    head, msg_id = completed
    return PreparedEmail(
        message_id=msg_id,
        mail_from=envelope.mail_from,
        recipients=envelope.recipients,
        data=_joined(data, split, head),
        smtputf8=envelope.smtputf8,
        eight_bit=False,
    )


def _joined(data: bytes, split: int, head: bytes) -> bytes:
    """The message to send: *head*, then the body of *data*, which ends in CRLF.

    *split* is where the empty line after *data*'s own header section starts.
    The body is copied once, into the result; *data* itself is the result when
    its header section needed no change.
    """
    ended = data.endswith(b"\r\n") or len(data) == split + 4
    if ended and len(head) == split + 2 and data.startswith(head):
        return data
    body = memoryview(data)[split + 4 :]
    return b"".join((head, b"\r\n", body, b"" if ended else b"\r\n"))


def _end_of_plain_header(data: bytes) -> int | None:
    """Where the empty line after the header section starts, if *data* is plain.

    Plain: ASCII without NUL, every line ending in CRLF and at most 998 octets.
    """
    if not data.isascii() or b"\0" in data or not _plain_lines(data):
        return None
    split = data.find(b"\r\n\r\n")
    return split if split >= 0 else None


def _completed_head(
    envelope: Envelope, now: datetime, new_message_id: Callable[[], str]
) -> tuple[bytes, str] | None:
    """The header section to send, completed, and the message id.

    ``None`` where the full path would write the header section otherwise: a
    header rewritten by the envelope's checks, 8-bit text, a line too long.

    Raises:
        InvalidMessageError: as :func:`.completion.complete_headers`.
    """
    # Only a non-ASCII address is ever rewritten (to its A-label); should one be,
    # it is a header object that the email package folds its own way.
    if any(type(value) is not str for _, value in envelope.headers):
        return None
    headers, msg_id = complete_headers(
        envelope.headers, now=now, new_message_id=new_message_id
    )
    head = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if not head.isascii():
        return None
    if len(head) > MAX_LINE and max(map(len, head.split("\r\n"))) > MAX_LINE:
        return None
    return head.encode("ascii"), msg_id


def _plain_lines(data: bytes) -> bool:
    """Return whether every line of *data* ends in CRLF and is at most 998 octets.

    The last line may lack its line end. One split at every kind of line end
    serves the first check: CRLF is the only two-octet line end, so the line ends
    are all CRLF exactly when they took two octets each.
    """
    lines = data.splitlines()
    ends = len(lines) if data.endswith((b"\r", b"\n")) else len(lines) - 1
    if len(data) - len(b"".join(lines)) != 2 * ends:
        return False
    return _short_lines(data)


def _short_lines(data: bytes) -> bool:
    """Return whether no line of *data*, whose line ends are all CRLF, is too long.

    A line of at most 998 octets has its LF within the 1000 octets from its
    start, and then so have the lines after it up to the last LF there: one
    search from the end of each 1000 octets serves all the lines they hold.
    """
    start = 0
    while len(data) - start > MAX_LINE:
        last = data.rfind(b"\n", start, start + MAX_LINE + 2)
        if last < 0:
            return False
        start = last + 1
    return True


def _plain_fields(block: str) -> list[tuple[str, str]] | None:
    """Split a CRLF header block into fields; ``None`` unless every one is plain."""
    fields = split_header_block(block)
    if fields is None or _has_encoded_text(block, fields):
        return None
    keys = [name.lower() for name, _ in fields]
    if _repeats_a_single_header(keys) or not _is_plain_text(fields, keys):
        return None
    if _has_overlong_field(block, fields):
        return None
    return fields


def _has_encoded_text(block: str, fields: list[tuple[str, str]]) -> bool:
    """Whether a value holds what may be an encoded word or RFC 2231 parameter."""
    # Most blocks hold no "=?" or "*=" at all; only those are searched field by field.
    return ("=?" in block or "*=" in block) and any(
        "=?" in value or "*=" in value for _, value in fields
    )


def _repeats_a_single_header(keys: list[str]) -> bool:
    """Whether a header RFC 5322 §3.6 or MIME allows once appears twice."""
    if len(set(keys)) == len(keys):
        return False
    single = [key for key in keys if key in _SINGLE]
    return len(set(single)) != len(single)


def _is_plain_text(fields: list[tuple[str, str]], keys: list[str]) -> bool:
    """Whether the body is text in a well-known transfer encoding.

    Text lines end in CRLF whatever they ended in, so the full path keeps the
    octets of a text part (RFC 2045 §5.1) and so does this.
    """
    if "content-type" in keys and not is_text_type(
        fields[keys.index("content-type")][1]
    ):
        return False
    if "content-transfer-encoding" in keys:
        encoding = fields[keys.index("content-transfer-encoding")][1]
        return _ENCODING.fullmatch(unfold(encoding)) is not None
    return True


def _has_overlong_field(block: str, fields: list[tuple[str, str]]) -> bool:
    """Whether a field has a line the full path would rebuild and fold."""
    # A block of at most 998 octets cannot hold one.
    return len(block) > MAX_LINE and any(
        max(map(len, value.split("\r\n"))) > MAX_LINE - len(name) - 2
        for name, value in fields
    )
