"""Message preparation: from the caller's message to the exact bytes that are sent.

:func:`prepare_email` is pure: it never changes the caller's object, does no I/O, and
either returns a complete :class:`PreparedEmail` or raises
:class:`~mailstrom_py.errors.InvalidMessageError`. Everything that protects the SMTP
conversation is checked here, once, before the message is stored: strict addresses,
header injection (CVE-2024-6923 encoded newlines included), and a body of CRLF lines
of at most 998 octets with no bare CR or LF (SMTP smuggling).

What is unsafe is refused, and so is a header the envelope must be read from that
is not sound. What is merely non-conforming goes through as it came: a multipart
without its boundary; with *mail_from* and *rcpt_to* given, header fields that run
into the body, a missing or odd From, two Cc fields.

Most messages given as bytes or str are already clean; :mod:`.fastpath`
prepares those without the email package, with the same checks and exactly the same
result. Everything else takes the full way here: parse (or copy), check, encode,
serialise, and parse again to verify. A message given as bytes or str whose body
needs no re-encoding keeps its own body octets (:mod:`.verbatim`).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.errors import (
    FirstHeaderLineIsContinuationDefect,
    InvalidHeaderDefect,
    MisplacedEnvelopeHeaderDefect,
    MissingHeaderBodySeparatorDefect,
)
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from email.parser import BytesParser, Parser
from email.policy import EmailPolicy, compat32
from typing import Any

from ..errors import InvalidMessageError
from .address import unfold, validate_address
from .body import SURROGATE, encode_body
from .envelope import read_envelope
from .fastpath import prepare_clean
from .fields import (
    FIELD_NAME,
    FOLD_AT,
    MAX_LINE,
    RECIPIENT_HEADERS,
    SINGLE_MIME_HEADERS,
    UNIQUE_HEADERS,
    canonical_line_ends,
    complete_headers,
    reject_line_breaks,
)
from .serialise import EMAIL_ERRORS, SMTP, serialise, verify
from .verbatim import RawMessage, read_raw, serialise_verbatim

__all__ = ["FOLD_AT", "MAX_LINE", "PreparedEmail", "prepare_email", "validate_address"]

# After these, readers disagree on which lines are header fields: the email package
# drops a line that another reader takes as the end of the header section.
_AMBIGUOUS_HEADERS = (
    FirstHeaderLineIsContinuationDefect,
    InvalidHeaderDefect,
    MisplacedEnvelopeHeaderDefect,
)


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
    of To, Cc and Bcc, de-duplicated (domains compared case-insensitively). Headers
    the envelope is read from must parse cleanly, once each; with the envelope
    given, they go as written whatever they hold. Bcc is removed from the bytes;
    Date and Message-ID are added when missing; a leading mbox ``From`` line is
    dropped. Body lines end in CRLF; a part with 8-bit data (unless *allow_8bit*),
    a NUL or a line over 998 octets is re-encoded as quoted-printable (text) or
    base64 (anything else). Given as bytes or str, a message whose header section
    ends its lines in a bare CR, or in LF alone beside CRLF, is refused; one
    written with LF alone throughout goes out in CRLF.

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
    given: object = rcpt_to
    if given is not None and isinstance(given, Iterator):
        rcpt_to = tuple(given)  # read once, though both ways may read it
    factory = _CachingHeaderRegistry()
    if isinstance(message, (bytes, bytearray, str)):
        clean = prepare_clean(
            message,
            factory,
            helo_name=helo_name,
            mail_from=mail_from,
            rcpt_to=rcpt_to,
            allow_null_sender=allow_null_sender,
            now=now,
            message_id=message_id,
        )
        if clean is not None:
            return PreparedEmail(
                message_id=clean.message_id,
                mail_from=clean.envelope.mail_from,
                recipients=clean.envelope.recipients,
                data=clean.data,
                smtputf8=clean.envelope.smtputf8,
                eight_bit=False,
            )
    return _prepare_slow(
        message,
        factory,
        helo_name=helo_name,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        allow_8bit=allow_8bit,
        allow_null_sender=allow_null_sender,
        now=now,
        message_id=message_id,
    )


def _prepare_slow(
    message: Message | bytes | str,
    factory: HeaderRegistry,
    *,
    helo_name: str,
    mail_from: str | None,
    rcpt_to: Sequence[str] | None,
    allow_8bit: bool,
    allow_null_sender: bool,
    now: datetime | None,
    message_id: str | None,
) -> PreparedEmail:
    """Prepare any message with the email package: parse, check, encode, serialise.

    The reference behaviour of :func:`prepare_email`, which takes a faster way for
    clean bytes or str (:mod:`.fastpath`) with identical results.
    """
    # Raw headers go out as written; only header objects are folded (refolding raw
    # text can turn a msg-id into encoded words).
    policy = SMTP.clone(header_factory=factory, refold_source="none")
    msg, raw = _working_copy(message, policy)
    _check_structure(msg, envelope_given=mail_from is not None and rcpt_to is not None)
    unique = UNIQUE_HEADERS | (RECIPIENT_HEADERS if rcpt_to is None else frozenset())
    rebuilt = False  # a part's header: then the parts are written anew
    for part in msg.walk():
        top = part is msg
        single = unique | SINGLE_MIME_HEADERS if top else SINGLE_MIME_HEADERS
        if _check_part(part, factory, single=single) and not top:
            rebuilt = True

    envelope = read_envelope(
        msg.raw_items(),
        factory,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        allow_null_sender=allow_null_sender,
    )
    headers, msg_id = complete_headers(
        envelope.headers, now=now, message_id=message_id, helo_name=helo_name
    )
    _replace_headers(msg, headers)

    encoded = encode_body(msg, allow_8bit=allow_8bit)
    utf8 = envelope.smtputf8
    out_policy = policy.clone(cte_type="8bit" if allow_8bit else "7bit", utf8=utf8)
    if raw is not None and not (encoded or rebuilt):
        data = serialise_verbatim(msg, raw, out_policy)
    else:
        data = serialise(msg, out_policy)
    verify(data, msg, out_policy, ascii_only=not (allow_8bit or utf8))
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


def _working_copy(
    message: object, policy: EmailPolicy[Any]
) -> tuple[Message, RawMessage | None]:
    """Parse or copy *message* into a private object that may be changed freely.

    Returns:
        The private message, and the raw message it was parsed from, whose body
        may be sent as it is; ``None`` when it came as an object, or as text with
        characters beyond ASCII in its body (they are encoded part by part).
    """
    if not isinstance(message, Message | bytes | bytearray | str):
        name = type(message).__name__
        raise TypeError(f"expected an EmailMessage, bytes or str, not {name}")
    if isinstance(message, Message) and isinstance(message.policy, EmailPolicy):
        return _private_copy(message, policy), None
    if isinstance(message, Message):
        for part in message.walk():
            for name, value in part.raw_items():
                reject_line_breaks(name, unfold(str(value)))
        message = message.as_bytes(policy=compat32)
    text = isinstance(message, str) and not message.isascii()
    if isinstance(message, str):
        message = message.encode("utf-8", "surrogatepass")
    # Before any parsing: the parser ends a line at a CR or LF alone as well.
    raw = read_raw(canonical_line_ends(bytes(message)))
    try:
        if text:
            string = raw.data.decode("utf-8", "surrogatepass")
            parsed: Message = Parser(policy=policy).parsestr(string)
            # Characters, not octets: its body is its own only if it is ASCII.
            return parsed, raw if raw.data[raw.body :].isascii() else None
        return BytesParser(policy=policy).parsebytes(raw.data), raw
    except EMAIL_ERRORS as exc:
        raise InvalidMessageError(f"the message cannot be parsed: {exc}") from exc


def _private_copy(part: Message, policy: EmailPolicy[Any]) -> Message:
    """Copy *part* for changing: new lists of headers and of parts, the rest shared.

    Preparation changes a part only through those lists (set_payload() rebinds the
    payload); header objects and strings are immutable. Sharing them is safe and
    much faster than deepcopy().
    """
    clone = copy.copy(part)
    state = vars(clone)  # what Message.__init__ sets, for every part
    state["policy"] = policy
    state["_headers"] = list(state["_headers"])
    state["defects"] = list(state["defects"])
    if isinstance(state["_payload"], list):
        state["_payload"] = [
            _private_copy(sub, policy) if isinstance(sub, Message) else sub
            for sub in state["_payload"]
        ]
    return clone


def _check_structure(msg: Message, *, envelope_given: bool) -> None:
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
        _replace_headers(part, checked)
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
    params = getattr(header, "params", {})
    reject_line_breaks(name, str(header), *map(str, params.values()))


def _replace_headers(part: Message, headers: list[tuple[str, Any]]) -> None:
    for name in {name.lower() for name in part}:
        del part[name]
    for name, value in headers:
        part.set_raw(name, value)
