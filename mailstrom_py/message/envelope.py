"""The envelope of a message, read from its address headers or given.

Address *headers* are parsed with the email package's modern header parser (or, for
the plain lists most mail carries, a simple reader of :mod:`.address`), and any
defect it reports is an error; every address in them passes
:func:`~.address.validate_address`. The envelope sender and recipients follow
RFC 5322 §3.6.2 and §3.6.3 unless the caller gives them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.errors import MessageError, NonASCIILocalPartDefect, ObsoleteHeaderDefect
from email.headerregistry import AddressHeader, BaseHeader, Group
from typing import TYPE_CHECKING, Any, cast

from ..errors import InvalidMessageError
from .address import (
    address_error,
    is_plain,
    simple_addresses,
    unfold,
    validate_address,
    with_addr_spec,
)

if TYPE_CHECKING:
    from email.headerregistry import HeaderRegistry

__all__ = [
    "AddressList",
    "Envelope",
    "read_address_header",
    "read_envelope",
    "with_default_from",
]

_ADDRESS_HEADERS = frozenset(
    {"from", "sender", "reply-to", "to", "cc", "bcc"}
    | {"resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc"}
)
_BLIND_HEADERS = frozenset({"bcc", "resent-bcc"})
_SENDER_HEADERS = frozenset({"from", "sender"})
_RECIPIENT_HEADERS = frozenset({"to", "cc", "bcc"})
# The headers the envelope is read from, by (mail_from is None, rcpt_to is None).
_ROUTING = {
    (True, True): _SENDER_HEADERS | _RECIPIENT_HEADERS,
    (True, False): _SENDER_HEADERS,
    (False, True): _RECIPIENT_HEADERS,
    (False, False): frozenset(),
}
_HARMLESS_DEFECTS = (ObsoleteHeaderDefect, NonASCIILocalPartDefect)
_PARSE_ERRORS = (ValueError, LookupError, TypeError, AttributeError, MessageError)


@dataclass(frozen=True, init=False)
class Envelope:
    """The envelope of a message, and the headers to send with it.

    Attributes:
        mail_from: the envelope sender; ``""`` for the null reverse-path.
        recipients: the envelope recipients, de-duplicated, in first-seen order.
        smtputf8: an envelope or header address has a UTF-8 local part.
        headers: the message's ``(name, value)`` headers without Bcc or Resent-Bcc,
            address headers rewritten where a domain became an A-label.
    """

    mail_from: str
    recipients: tuple[str, ...]
    smtputf8: bool
    headers: tuple[tuple[str, Any], ...]

    def __init__(
        self,
        mail_from: str,
        recipients: tuple[str, ...],
        smtputf8: bool,
        headers: tuple[tuple[str, Any], ...],
    ) -> None:
        # The dataclass's own __init__, written out to fill the frozen
        # instance's __dict__ directly rather than through object.__setattr__
        # field by field: one envelope is read for every message sent.
        fields = self.__dict__
        fields["mail_from"] = mail_from
        fields["recipients"] = recipients
        fields["smtputf8"] = smtputf8
        fields["headers"] = headers


@dataclass(frozen=True, init=False)
class AddressList:
    """The addresses of one address header, checked and normalised.

    Attributes:
        addresses: each mailbox's addr-spec in order, groups expanded, normalised as
            :func:`validate_address` does.
        has_group: whether the header used group syntax (``name: a@b, c@d;``).
        rewritten: a header object carrying the normalised addresses when one differs
            from what the header said (an IDN domain, say), else ``None``.
    """

    addresses: tuple[str, ...]
    has_group: bool
    rewritten: BaseHeader | None

    def __init__(
        self,
        addresses: tuple[str, ...],
        has_group: bool,
        rewritten: BaseHeader | None,
    ) -> None:
        # Written out as Envelope's is: a message has two or three address
        # headers. Same fields and order.
        fields = self.__dict__
        fields["addresses"] = addresses
        fields["has_group"] = has_group
        fields["rewritten"] = rewritten


def read_envelope(
    headers: Iterable[tuple[str, Any]],
    factory: HeaderRegistry,
    *,
    mail_from: str | None,
    rcpt_to: Sequence[str] | None,
    allow_null_sender: bool,
    default_from: str | None = None,
) -> Envelope:
    """Check the address headers and derive the envelope, as prepare_email() says.

    An address header that the envelope is not read from (From and Sender with
    *mail_from*, To, Cc and Bcc with *rcpt_to*, Resent-* always) is merely kept as
    written when it does not parse, provided it is ASCII text.

    A message without a From header gets *default_from* as its first header,
    checked and read like one the caller wrote (so it is the envelope sender
    unless *mail_from* or a Sender header says otherwise).

    Raises:
        InvalidMessageError: an address header the envelope is read from, or an
            explicit address, is invalid; From and Sender break RFC 5322 §3.6.2
            without *mail_from*; or there is no recipient.
    """
    if default_from is not None:
        headers = with_default_from(headers, default_from, factory)
    kept = []
    found: dict[str, AddressList] = {}
    every_address: list[str] = []
    routing = _ROUTING[mail_from is None, rcpt_to is None]
    for field in headers:
        name, value = field
        key, sent = name.lower(), field
        if key in _ADDRESS_HEADERS:
            try:
                found[key] = listed = read_address_header(name, value, factory)
            except InvalidMessageError:
                if key in routing or type(value) is not str or not value.isascii():
                    raise
            else:
                every_address += listed.addresses
                if listed.rewritten is not None:
                    sent = (name, listed.rewritten)
        if key not in _BLIND_HEADERS:
            kept.append(sent)
    sender = _envelope_sender(found, mail_from, allow_null_sender=allow_null_sender)
    recipients = _envelope_recipients(found, rcpt_to)
    every_address += [sender, *recipients]
    smtputf8 = not "".join(every_address).isascii()
    return Envelope(sender, recipients, smtputf8, tuple(kept))


def with_default_from(
    headers: Iterable[tuple[str, Any]], default_from: str, factory: HeaderRegistry
) -> list[tuple[str, Any]]:
    """Return *headers*, led by ``From: default_from`` if they have no From.

    Non-ASCII text (a display name) becomes a header object, which the email
    package writes as encoded words (RFC 2047).
    """
    fields = list(headers)
    if any(name.lower() == "from" for name, _ in fields):
        return fields
    value: Any = (
        default_from if default_from.isascii() else factory("From", default_from)
    )
    return [("From", value), *fields]


def read_address_header(name: str, value: Any, factory: HeaderRegistry) -> AddressList:
    """Parse an address header (raw text or a header object); check each address.

    Raises:
        InvalidMessageError: the header does not parse, the parser reports a defect
            other than obsolete syntax, or an address fails :func:`validate_address`.
    """
    # Only raw text: a header object's str() is decoded, and a decoded display name
    # may look like an address.
    if type(value) is str and is_plain(value):  # the commonest: one bare address
        return AddressList((value,), has_group=False, rewritten=None)
    value = unfold(value)
    if not isinstance(value, BaseHeader):
        simple = simple_addresses(value)
        if simple is not None:
            checked = tuple(validate_address(a, name)[0] for a in simple)
            return AddressList(checked, has_group=False, rewritten=None)
    return _checked_addresses(name, _parsed(name, value, factory), factory)


def _parsed(name: str, value: Any, factory: HeaderRegistry) -> AddressHeader:
    """Return *value* as an address header object, refusing any real defect."""
    header: object = value
    if not isinstance(value, AddressHeader):
        try:
            header = factory(name, str(value))
        except _PARSE_ERRORS as exc:
            raise InvalidMessageError(f"cannot be parsed: {exc}", name) from exc
    if not isinstance(header, AddressHeader):
        raise InvalidMessageError("is not parsed as an address header", name)
    for defect in cast(BaseHeader, header).defects:
        if not isinstance(defect, _HARMLESS_DEFECTS):
            raise address_error(value, f"is malformed: {defect}", name)
    return header


def _checked_addresses(
    name: str, header: AddressHeader, factory: HeaderRegistry
) -> AddressList:
    """Validate every address of *header*; rewrite it if one was normalised."""
    given = [address.addr_spec for address in header.addresses]
    addresses = [validate_address(addr_spec, name)[0] for addr_spec in given]
    rewritten = None
    if addresses != given:
        normalised = iter(addresses)
        groups = [
            Group(
                group.display_name,
                [with_addr_spec(a, next(normalised)) for a in group.addresses],
            )
            for group in header.groups
        ]
        rewritten = factory(name, groups)
    has_group = any(group.display_name is not None for group in header.groups)
    return AddressList(tuple(addresses), has_group, rewritten)


def _envelope_sender(
    found: Mapping[str, AddressList], mail_from: str | None, *, allow_null_sender: bool
) -> str:
    """Return *mail_from*, else Sender, else From; check them (RFC 5322 §3.6.2).

    *found* maps lower-case header names to their addresses.
    """
    if mail_from is not None:
        if allow_null_sender and mail_from in ("", "<>"):
            return ""
        return validate_address(mail_from, "mail_from")[0]
    author = found.get("from")
    if author is None or not author.addresses:
        raise InvalidMessageError("is required and must hold a mailbox", "From")
    if author.has_group:
        raise InvalidMessageError("must list mailboxes, not a group", "From")
    sender = found.get("sender")
    if sender is not None and (len(sender.addresses) != 1 or sender.has_group):
        raise InvalidMessageError("must hold exactly one mailbox", "Sender")
    if len(author.addresses) > 1 and sender is None:
        raise InvalidMessageError(
            "lists several mailboxes, so a Sender header is required", "From"
        )
    return (sender or author).addresses[0]


def _envelope_recipients(
    found: Mapping[str, AddressList], rcpt_to: Sequence[str] | None
) -> tuple[str, ...]:
    """Return *rcpt_to*, else To + Cc + Bcc, de-duplicated in first-seen order."""
    if isinstance(rcpt_to, str):
        raise InvalidMessageError("must be a list of addresses, not a str", "rcpt_to")
    if rcpt_to is None:
        candidates = [
            address
            for key in ("to", "cc", "bcc")
            if key in found
            for address in found[key].addresses
        ]
    else:
        candidates = [validate_address(address, "rcpt_to")[0] for address in rcpt_to]
    if len(candidates) == 1:
        return (candidates[0],)
    unique: dict[str, str] = {}
    for address in candidates:
        local, _, domain = address.rpartition("@")
        unique.setdefault(f"{local}@{domain.lower()}", address)
    if not unique:
        raise InvalidMessageError("is empty, and so are To, Cc and Bcc", "rcpt_to")
    return tuple(unique.values())
