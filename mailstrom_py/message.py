"""Message preparation: from the caller's message to the exact bytes that are sent.

:func:`prepare_email` is pure: it never changes the caller's object, does no I/O, and
either returns a complete :class:`PreparedEmail` or raises
:class:`~mailstrom_py.errors.InvalidMessageError`. Everything that protects the SMTP
conversation is checked here, once, before the message is stored: strict addresses,
header injection (CVE-2024-6923 encoded newlines included), and a body of CRLF lines
of at most 998 octets with no bare CR or LF (SMTP smuggling).
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import errors as email_errors
from email.errors import MessageError
from email.generator import BytesGenerator
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from email.parser import BytesParser, Parser
from email.policy import SMTP, EmailPolicy, compat32
from email.utils import format_datetime
from typing import Any

from ._address import domain_to_ascii, read_envelope, unfold, validate_address
from .errors import InvalidMessageError

__all__ = ["PreparedEmail", "prepare_email", "validate_address"]

#: RFC 5322 §2.1.1 and RFC 5321 §4.5.3.1.6: octets in a line, not counting its CRLF.
MAX_LINE = 998
#: RFC 5322 §2.1.1: the line length that folding aims for.
FOLD_AT = 78

# RFC 5322 §3.6 allows one of each; a second one makes the message ambiguous.
_SINGLE_HEADERS = frozenset(
    {"from", "sender", "reply-to", "to", "cc", "bcc", "subject", "date", "message-id"}
    | {"in-reply-to", "references", "mime-version"}
)
_SINGLE_MIME_HEADERS = frozenset({"content-type", "content-transfer-encoding"})
# The email package folds a long msg-id into encoded words, which breaks threading.
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
# After these the parse is a guess: a line without a colon ends the headers early, a
# multipart without its boundary has no parts.
_FATAL_DEFECTS = (
    email_errors.MissingHeaderBodySeparatorDefect,
    email_errors.FirstHeaderLineIsContinuationDefect,
    email_errors.MisplacedEnvelopeHeaderDefect,
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.InvalidMultipartContentTransferEncodingDefect,
)
# What the email package raises on input it cannot handle.
_EMAIL_ERRORS = (ValueError, LookupError, TypeError, AttributeError, MessageError)
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# CR, LF and NUL, plus what str.splitlines() breaks on: when folding, the email package
# (3.11) splits header values with it, turning any of these into a real line break.
_LINE_BREAKING = re.compile("[\x00\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_SURROGATE = re.compile("[\udc80-\udcff]")
_ID_TEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_MSG_ID = re.compile(rf"<{_ID_TEXT}@(?:{_ID_TEXT}|\[[!-Z^-~]*\])>")
_NEWLINE = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class PreparedEmail:
    """A message ready for SMTP: its envelope and its final bytes.

    Attributes:
        message_id: the Message-ID header's value without angle brackets.
        mail_from: the envelope sender (an addr-spec); ``""`` only for a null
            reverse-path, which ``allow_null_sender`` must have allowed.
        recipients: the envelope recipients, de-duplicated, in first-seen order.
        data: the message as sent: CRLF line ends, every line at most 998 octets plus
            CRLF, ending with CRLF, not dot-stuffed (that is the SMTP layer's job).
        smtputf8: an envelope address or a header needs SMTPUTF8 (RFC 6531).
        eight_bit: ``data`` holds octets above 127, so it needs 8BITMIME (RFC 6152).
        require_tls: RFC 8689 REQUIRETLS was asked for: deliver only over verified
            TLS to a server that offers REQUIRETLS, else fail with 5.7.30.
        tls_optional: the message says ``TLS-Required: No`` (RFC 8689): deliver it
            even where ``Config.require_tls`` would insist on TLS.
    """

    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    smtputf8: bool
    eight_bit: bool
    require_tls: bool = False
    tls_optional: bool = False


def prepare_email(
    message: Message | bytes | str,
    *,
    helo_name: str,
    mail_from: str | None = None,
    rcpt_to: Sequence[str] | None = None,
    allow_8bit: bool = False,
    allow_null_sender: bool = False,
    now: datetime | None = None,
    message_id: str | None = None,
) -> PreparedEmail:
    """Check a message and turn it into the envelope and bytes to send.

    The envelope sender is *mail_from*, else the Sender header's mailbox, else the
    From header's single mailbox. The recipients are *rcpt_to*, else every address
    of To, Cc and Bcc, de-duplicated (domains compared case-insensitively). Bcc is
    removed from the bytes; Date and Message-ID are added when missing. Body lines end
    in CRLF; a part with 8-bit data (unless *allow_8bit*), a NUL or a line over 998
    octets is re-encoded as quoted-printable (text) or base64 (anything else).

    Args:
        message: an :class:`email.message.EmailMessage` (copied, never changed), a
            compat32 :class:`email.message.Message`, or the message as bytes or str.
        helo_name: the client's host name; the right half of a generated Message-ID.
        mail_from: the envelope sender, overriding the headers.
        rcpt_to: the envelope recipients, overriding To, Cc and Bcc.
        allow_8bit: keep 8-bit text parts 8-bit (the server must offer 8BITMIME).
        allow_null_sender: accept ``""`` or ``"<>"`` as *mail_from* (bounces only).
        now: the time for a missing Date header; defaults to the current UTC time.
        message_id: ``id-left@id-right`` to use when the message has no Message-ID.

    Returns:
        The prepared message.

    Raises:
        InvalidMessageError: the message or an envelope argument is unusable; ``field``
            names the header or argument at fault.
        TypeError: *message* is not a message, bytes or str.
    """
    factory = _CachingHeaderRegistry()
    # Raw headers go out as written; only header objects are folded (refolding raw
    # text can turn a msg-id into encoded words).
    policy = SMTP.clone(header_factory=factory, refold_source="none")
    msg = _working_copy(message, policy)
    for part in msg.walk():
        _check_part(part, factory, top=part is msg)

    envelope = read_envelope(
        msg.raw_items(),
        factory,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        allow_null_sender=allow_null_sender,
    )
    headers = list(envelope.headers)
    names = {name.lower() for name, _ in headers}
    if "date" not in names:
        when = now if now is not None else datetime.now(UTC)
        headers.append(("Date", format_datetime(when)))
    if "message-id" not in names:
        headers.append(("Message-ID", f"<{_new_message_id(message_id, helo_name)}>"))
    headers = [(name, _id_header(name, value)) for name, value in headers]
    msg_id = next(v for n, v in headers if n.lower() == "message-id").strip("<>")
    _replace_headers(msg, headers)

    _encode_body(msg, allow_8bit=allow_8bit)
    utf8 = envelope.smtputf8
    out_policy = policy.clone(cte_type="8bit" if allow_8bit else "7bit", utf8=utf8)
    data = _serialise(msg, out_policy)
    _verify(data, msg, out_policy, ascii_only=not (allow_8bit or utf8))
    return PreparedEmail(
        message_id=msg_id,
        mail_from=envelope.mail_from,
        recipients=envelope.recipients,
        data=data,
        smtputf8=utf8,
        eight_bit=not data.isascii(),
    )


class _CachingHeaderRegistry(HeaderRegistry):
    """A header factory that parses each distinct header once per preparation.

    The email package re-parses a header on every read (the parser alone reads each
    part's Content-Type four times); header objects are immutable, so sharing is safe.
    """

    def __init__(self) -> None:
        super().__init__()
        self._parsed: dict[tuple[str, str], BaseHeader] = {}

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if type(value) is not str:
            return super().__call__(name, value)
        header = self._parsed.get((name, value))
        if header is None:
            header = self._parsed[name, value] = super().__call__(name, value)
        return header


def _working_copy(message: object, policy: EmailPolicy[Any]) -> Message:
    """Parse or copy *message* into a private object that may be changed freely."""
    if not isinstance(message, Message | bytes | bytearray | str):
        name = type(message).__name__
        raise TypeError(f"expected an EmailMessage, bytes or str, not {name}")
    if isinstance(message, Message) and isinstance(message.policy, EmailPolicy):
        # Header objects are immutable: the copy shares them (and is much faster).
        memo: dict[int, Any] = {}
        for part in message.walk():
            memo[id(part.policy)] = policy
            memo.update((id(value), value) for _, value in part.raw_items())
        return copy.deepcopy(message, memo)
    if isinstance(message, Message):
        for part in message.walk():
            for name, value in part.raw_items():
                _reject_line_breaks(name, unfold(str(value)))
    try:
        if isinstance(message, str):
            parsed: Message = Parser(policy=policy).parsestr(message)
            return parsed
        if isinstance(message, Message):
            message = message.as_bytes(policy=compat32)
        parsed = BytesParser(policy=policy).parsebytes(bytes(message))
        return parsed
    except _EMAIL_ERRORS as exc:
        raise InvalidMessageError(f"the message cannot be parsed: {exc}") from exc


def _check_part(part: Message, factory: HeaderRegistry, *, top: bool) -> None:
    """Check one part's structure and headers; decode raw 8-bit header text."""
    for defect in part.defects:
        if isinstance(defect, _FATAL_DEFECTS):
            reason = type(defect).__name__.removesuffix("Defect")
            raise InvalidMessageError(f"the message is malformed ({reason})")
    single = _SINGLE_HEADERS | _SINGLE_MIME_HEADERS if top else _SINGLE_MIME_HEADERS
    counts = Counter(name.lower() for name in part)
    for name in part:
        if counts[name.lower()] > 1 and name.lower() in single:
            raise InvalidMessageError("appears more than once; one is allowed", name)
    raw = list(part.raw_items())
    checked = [(name, _checked_value(name, value, factory)) for name, value in raw]
    if any(new is not old for (_, new), (_, old) in zip(checked, raw, strict=True)):
        _replace_headers(part, checked)


def _checked_value(name: str, value: Any, factory: HeaderRegistry) -> Any:
    """Reject a header whose raw or decoded value could break the header block.

    Returns the value to keep: the same object, or a header object built from the
    decoded text when the raw text holds 8-bit octets or a line too long to send.
    """
    if not _FIELD_NAME.fullmatch(name):
        raise InvalidMessageError("is not a valid header field name", repr(name))
    if isinstance(value, BaseHeader):
        _reject_decoded(name, value)
        return value
    text = unfold(value)
    _reject_line_breaks(name, text)
    if _SURROGATE.search(text):
        try:
            text = text.encode("ascii", "surrogateescape").decode("utf-8")
        except UnicodeError as exc:
            raise InvalidMessageError("holds 8-bit octets, not UTF-8", name) from exc
        _reject_line_breaks(name, text)
    too_long = max(map(len, value.splitlines()), default=0) > MAX_LINE - len(name) - 2
    rebuild = too_long or not text.isascii()
    if rebuild or "=?" in text or "*=" in text:
        try:
            header = factory(name, text)
        except _EMAIL_ERRORS as exc:
            raise InvalidMessageError(f"cannot be parsed: {exc}", name) from exc
        _reject_decoded(name, header)
        if rebuild:
            return header
    return value


def _reject_decoded(name: str, header: BaseHeader) -> None:
    params = getattr(header, "params", {})
    _reject_line_breaks(name, str(header), *map(str, params.values()))


def _reject_line_breaks(name: str, *texts: str) -> None:
    for text in texts:
        found = _LINE_BREAKING.search(text)
        if found:
            why = "CR, LF, NUL and other line breaks are refused, even encoded"
            raise InvalidMessageError(f"contains {found.group()!r}: {why}", name)


def _replace_headers(part: Message, headers: list[tuple[str, Any]]) -> None:
    for name in {name.lower() for name in part}:
        del part[name]
    for name, value in headers:
        part.set_raw(name, value)


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


def _encode_body(msg: Message, *, allow_8bit: bool) -> None:
    """Re-encode every leaf part whose body cannot be sent as it stands."""
    changed = False
    for part in msg.walk():
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if part.is_multipart() and cte in ("8bit", "binary") and not allow_8bit:
            part.replace_header("Content-Transfer-Encoding", "7bit")
        wire = None if part.is_multipart() else _payload_bytes(part)
        if wire is None:
            continue
        text = part.get_content_maintype() == "text"
        short = b"\0" not in wire and not _has_long_line(wire)
        if cte in ("quoted-printable", "base64"):
            if short and wire.isascii():
                continue
            content = part.get_payload(decode=True)
            if not isinstance(content, bytes):
                continue
        elif cte in ("7bit", "8bit", "binary"):
            # Text lines end in CRLF whatever they ended in; other data keeps its octets
            # exactly, so a bare CR or LF there means base64.
            exact = text or (cte != "binary" and not _has_bare_line_end(wire))
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


def _payload_bytes(part: Message) -> bytes | None:
    """Return a leaf part's body as it stands on the wire, before line-end changes."""
    # get_payload() decodes surrogate-escaped octets with the declared charset and
    # errors="replace"; like the stdlib generator, this needs the stored octets.
    payload = getattr(part, "_payload", None)
    if payload is None:
        return None
    if not isinstance(payload, str):
        raise InvalidMessageError("holds a payload that is not text", "body")
    if payload.isascii() or _SURROGATE.search(payload):
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


def _has_bare_line_end(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def _has_long_line(data: bytes) -> bool:
    return len(data) > MAX_LINE and max(map(len, _NEWLINE.split(data))) > MAX_LINE


def _serialise(msg: Message, policy: EmailPolicy[Any]) -> bytes:
    buffer = io.BytesIO()
    try:
        BytesGenerator(buffer, policy=policy).flatten(msg, unixfrom=False)
    except _EMAIL_ERRORS as exc:
        raise InvalidMessageError(f"the message cannot be serialised: {exc}") from exc
    data = buffer.getvalue()
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _verify(
    data: bytes, msg: Message, policy: EmailPolicy[Any], *, ascii_only: bool
) -> None:
    """Check the final bytes against the promises of :class:`PreparedEmail`.

    Serialising must not change what the message says: parsed again, the bytes must
    show the same parts with the same header names, so nothing was injected.
    """
    if _has_bare_line_end(data):
        raise InvalidMessageError("serialising left a bare CR or LF", "body")
    lines = data.split(b"\r\n")
    if max(map(len, lines)) > MAX_LINE:
        raise InvalidMessageError(*_long_line(lines))
    if ascii_only and not data.isascii():
        raise InvalidMessageError("8-bit text remains outside any part", "body")
    reparsed = BytesParser(policy=policy).parsebytes(data)
    expected = [[name.lower() for name in part] for part in msg.walk()]
    found = [[name.lower() for name in part] for part in reparsed.walk()]
    if found != expected or any(
        isinstance(d, _FATAL_DEFECTS) for d in reparsed.defects
    ):
        raise InvalidMessageError("serialising changed the header fields (injection?)")


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
