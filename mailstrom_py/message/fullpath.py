"""The full path of preparation: any message, with the email package.

Parse (or copy), check, complete the header, encode, serialise, and verify by
parsing again: :func:`prepare_full` takes these steps in this order, each in the
module that owns it. It is the reference behaviour; :mod:`.fastpath` gives the
same result for clean bytes or str without the email package.

What is unsafe is refused, and so is a header the envelope must be read from that
is not sound. What is merely non-conforming goes through as it came: a multipart
without its boundary; with *mail_from* and *rcpt_to* given, header fields that run
into the body, a missing or odd From, two Cc fields. A message given as bytes or
str whose body needs no re-encoding keeps its own body octets (:mod:`.verbatim`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from email.message import Message

from .body import encode_body
from .completion import complete_headers
from .envelope import read_envelope
from .header_checks import check_header_fields, check_structure, replace_headers
from .parsing import CachingHeaderRegistry, parse_message, reading_policy
from .prepared import PreparedEmail
from .serialise import SMTP, serialise, verify
from .verbatim import serialise_verbatim

__all__ = ["prepare_full"]


def prepare_full(
    message: Message | bytes | bytearray | str,
    factory: CachingHeaderRegistry,
    *,
    allow_8bit: bool,
    mail_from: str | None,
    rcpt_to: Sequence[str] | None,
    allow_null_sender: bool,
    now: datetime,
    new_message_id: Callable[[], str],
    default_from: str | None = None,
) -> PreparedEmail:
    """Prepare any message with the email package, as :class:`.Preparer` says.

    Args:
        message: the caller's message; never changed.
        factory: makes the header objects of this one preparation.
        allow_8bit: keep 8-bit text parts 8-bit.
        mail_from: the envelope sender, overriding the headers.
        rcpt_to: the envelope recipients, overriding To, Cc and Bcc.
        allow_null_sender: accept ``""`` or ``"<>"`` as *mail_from*.
        now: the time a missing Date header gives.
        new_message_id: the ``<id-left@id-right>`` of a message without one.
        default_from: the From header of a message without one.

    Raises:
        InvalidMessageError: the message or an envelope argument is unusable.
        TypeError: *message* is not a message, bytes or str.
    """
    # Raw headers go out as written; only header objects are folded (refolding raw
    # text can turn a msg-id into encoded words).
    policy = SMTP.clone(header_factory=factory, refold_source="none")
    msg, raw = parse_message(message, policy)

    check_structure(msg, envelope_given=mail_from is not None and rcpt_to is not None)
    rebuilt = check_header_fields(msg, factory, recipients_given=rcpt_to is not None)
    envelope = read_envelope(
        msg.raw_items(),
        factory,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        allow_null_sender=allow_null_sender,
        default_from=default_from,
    )

    headers, msg_id = complete_headers(
        envelope.headers, now=now, new_message_id=new_message_id
    )
    replace_headers(msg, headers)

    encoded = encode_body(msg, allow_8bit=allow_8bit)

    utf8 = envelope.smtputf8
    out_policy = policy.clone(cte_type="8bit" if allow_8bit else "7bit", utf8=utf8)
    if raw is not None and not (encoded or rebuilt):
        data = serialise_verbatim(msg, raw, out_policy)
    else:
        data = serialise(msg, out_policy)

    reading = reading_policy(out_policy.cte_type, utf8)
    verify(data, msg, reading, ascii_only=not (allow_8bit or utf8))
    return PreparedEmail(
        message_id=msg_id,
        mail_from=envelope.mail_from,
        recipients=envelope.recipients,
        data=data,
        smtputf8=utf8,
        eight_bit=not data.isascii(),
    )
