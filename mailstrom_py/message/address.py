"""Strict address checks for the envelope and the address headers.

Nothing here routes on :func:`email.utils.parseaddr` or
:func:`email.utils.getaddresses`: before CPython 3.11.10 they misread crafted input
(CVE-2023-27043). Each addr-spec is checked against the RFC 5321 grammar instead, with
the RFC 6531 extension for UTF-8 local parts. Address *headers* are parsed with the
email package's modern header parser, and any defect it reports is an error.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.errors import MessageError, NonASCIILocalPartDefect, ObsoleteHeaderDefect
from email.headerregistry import Address, AddressHeader, BaseHeader, Group
from typing import TYPE_CHECKING, Any, cast

from ..errors import InvalidMessageError

if TYPE_CHECKING:
    from email.headerregistry import HeaderRegistry

__all__ = [
    "Envelope",
    "domain_to_ascii",
    "read_address_header",
    "read_envelope",
    "unfold",
    "validate_address",
]

#: RFC 5321 §4.5.3.1.1: the longest local part, in octets.
MAX_LOCAL_PART = 64
#: RFC 5321 §4.5.3.1.2: the longest domain, in octets.
MAX_DOMAIN = 255
#: RFC 5321 §4.5.3.1.3: a path is at most 256 octets, angle brackets included.
MAX_ADDRESS = 254

_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ASCII_LABEL = re.compile(_LABEL)
_LDH_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ASCII_ADDRESS = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@{_LDH_DOMAIN.pattern}")
# RFC 6531 §3.3: atext and qtext also admit any non-ASCII character. Spelt as
# the ASCII that is not atext, left out: a class that reaches U+10FFFF costs
# milliseconds to compile, at every import.
_UTEXT = r'[^\x00-\x20"(),.:;<>@\[\\\]\x7f]'
_DOT_ATOM = re.compile(rf"{_UTEXT}+(?:\.{_UTEXT}+)*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
# UTS 46 §2.3: the full stops that separate labels.
_DOTS = re.compile("[.\u3002\uff0e\uff61]")
# Control characters, and the ones str.splitlines() treats as line breaks.
_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
# What turns one address into a list, a name-addr or a comment.
_NOT_BARE = re.compile(r'[\s,;<>()"\\]')
_FOLDING = re.compile(r"(?:\r\n|\r|\n)(?=[ \t])")
_ADDRESS_HEADERS = frozenset(
    {"from", "sender", "reply-to", "to", "cc", "bcc"}
    | {"resent-from", "resent-sender", "resent-to", "resent-cc", "resent-bcc"}
)
_BLIND_HEADERS = frozenset({"bcc", "resent-bcc"})
_SENDER_HEADERS = frozenset({"from", "sender"})
_RECIPIENT_HEADERS = frozenset({"to", "cc", "bcc"})
_HARMLESS_DEFECTS = (ObsoleteHeaderDefect, NonASCIILocalPartDefect)
_PARSE_ERRORS = (ValueError, LookupError, TypeError, AttributeError, MessageError)
# The address lists most mail carries: "a@b.c" or 'Name <a@b.c>' or '"Name" <a@b.c>',
# comma-separated. They are read without the (slow) general header parser.
_MAILBOX = (
    # The quoted name: printable ASCII but '"', '\\', '<', '>' and '@'.
    rf'(?:[. \t{_ATEXT}]*|"[ !#-;=?A-\[\]-~]*")[ \t]*'
    rf"<({_ASCII_ADDRESS.pattern})>"
    rf"|({_ASCII_ADDRESS.pattern})"
)
_SIMPLE_MAILBOX = re.compile(_MAILBOX)
_SIMPLE_LIST = re.compile(
    rf"[ \t]*(?:{_MAILBOX})(?:[ \t]*,[ \t]*(?:{_MAILBOX}))*[ \t]*"
)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


def validate_address(address: str, field: str) -> tuple[str, bool]:
    """Check that *address* is exactly one bare addr-spec and normalise it.

    The address must be ``local-part@domain``: no angle brackets, comment, display
    name, list separator or whitespace outside quotes, and no control character. The
    local part is a dot-atom or a quoted string (RFC 5321 §4.1.2), UTF-8 allowed (RFC
    6531). The domain is letter-digit-hyphen labels, an IDN (its labels become
    A-labels), or an ``[IPv4]`` / ``[IPv6:...]`` literal. The limits of RFC 5321
    §4.5.3.1 (local part 64, domain 255, address 254 octets) apply.

    Args:
        address: the address as given.
        field: the envelope field or header it came from, named in the error.

    Returns:
        ``(addr_spec, needs_smtputf8)``: the address with its local part minimally
        quoted and its domain in ASCII, and whether the local part is not ASCII.

    Raises:
        InvalidMessageError: *address* is not one valid addr-spec.
    """
    if isinstance(address, str) and _is_plain(address):
        return address, False
    local, domain = _split_address(address, field)
    addr_spec = f"{local}@{domain}"
    if len(addr_spec.encode()) > MAX_ADDRESS:
        size = len(addr_spec.encode())
        raise _invalid(address, f"is {size} octets; the limit is {MAX_ADDRESS}", field)
    return addr_spec, not local.isascii()


def domain_to_ascii(domain: str, field: str) -> str:
    """Return a domain or address literal as sent: each U-label as its A-label.

    Raises:
        InvalidMessageError: *domain* is invalid or longer than 255 octets.
    """
    if _LDH_DOMAIN.fullmatch(domain):
        ascii_domain = domain
    elif domain.startswith("["):
        ascii_domain = _address_literal(domain, field)
    else:
        ascii_domain = ".".join(
            _ascii_label(part, field) for part in _DOTS.split(domain)
        )
    if len(ascii_domain) > MAX_DOMAIN:
        size = len(ascii_domain)
        raise _invalid(domain, f"is {size} octets; the limit is {MAX_DOMAIN}", field)
    return ascii_domain


def read_envelope(
    headers: Iterable[tuple[str, Any]],
    factory: HeaderRegistry,
    *,
    mail_from: str | None,
    rcpt_to: Sequence[str] | None,
    allow_null_sender: bool,
) -> Envelope:
    """Check the address headers and derive the envelope, as prepare_email() says.

    An address header that the envelope is not read from (From and Sender with
    *mail_from*, To, Cc and Bcc with *rcpt_to*, Resent-* always) is merely kept as
    written when it does not parse, provided it is ASCII text.

    Raises:
        InvalidMessageError: an address header the envelope is read from, or an
            explicit address, is invalid; From and Sender break RFC 5322 §3.6.2
            without *mail_from*; or there is no recipient.
    """
    kept = []
    found: dict[str, AddressList] = {}
    every_address: list[str] = []
    routing = (_SENDER_HEADERS if mail_from is None else frozenset()) | (
        _RECIPIENT_HEADERS if rcpt_to is None else frozenset()
    )
    for name, value in headers:
        key, sent = name.lower(), value
        if key in _ADDRESS_HEADERS:
            try:
                found[key] = listed = read_address_header(name, value, factory)
            except InvalidMessageError:
                if key in routing or type(value) is not str or not value.isascii():
                    raise
            else:
                every_address += listed.addresses
                sent = value if listed.rewritten is None else listed.rewritten
        if key not in _BLIND_HEADERS:
            kept.append((name, sent))
    sender = _envelope_sender(found, mail_from, allow_null_sender=allow_null_sender)
    recipients = _envelope_recipients(found, rcpt_to)
    every_address += [sender, *recipients]
    smtputf8 = not "".join(every_address).isascii()
    return Envelope(sender, recipients, smtputf8, tuple(kept))


def unfold(value: Any) -> Any:
    """Undo the folding of raw header text; header objects are already unfolded."""
    if isinstance(value, str) and not isinstance(value, BaseHeader):
        return _FOLDING.sub("", value) if "\n" in value or "\r" in value else value
    return value


def read_address_header(name: str, value: Any, factory: HeaderRegistry) -> AddressList:
    """Parse an address header (raw text or a header object); check each address.

    Raises:
        InvalidMessageError: the header does not parse, the parser reports a defect
            other than obsolete syntax, or an address fails :func:`validate_address`.
    """
    # Only raw text: a header object's str() is decoded, and a decoded display name
    # may look like an address.
    if type(value) is str and _is_plain(value):  # the commonest: one bare address
        return AddressList((value,), has_group=False, rewritten=None)
    value = unfold(value)
    if not isinstance(value, BaseHeader) and _SIMPLE_LIST.fullmatch(value):
        simple = [m[1] or m[2] for m in _SIMPLE_MAILBOX.finditer(value)]
        if len(simple) == value.count("@"):
            checked = tuple(validate_address(a, name)[0] for a in simple)
            return AddressList(checked, has_group=False, rewritten=None)
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
            raise _invalid(value, f"is malformed: {defect}", name)
    given = [address.addr_spec for address in header.addresses]
    addresses = [validate_address(addr_spec, name)[0] for addr_spec in given]
    rewritten = None
    if addresses != given:
        normalised = iter(addresses)
        groups = [
            Group(
                group.display_name,
                [_readdressed(a, next(normalised)) for a in group.addresses],
            )
            for group in header.groups
        ]
        rewritten = factory(name, groups)
    has_group = any(group.display_name is not None for group in header.groups)
    return AddressList(tuple(addresses), has_group, rewritten)


def _is_plain(address: str) -> bool:
    """Whether *address* is an ASCII dot-atom addr-spec within the RFC 5321 limits.

    Such an address is valid, and :func:`validate_address` keeps it as it is.
    """
    return (
        _ASCII_ADDRESS.fullmatch(address) is not None
        and len(address) <= MAX_ADDRESS
        and address.rindex("@") <= MAX_LOCAL_PART
    )


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


def _split_address(address: object, field: str) -> tuple[str, str]:
    """Return the normalised local part and the ASCII domain of *address*."""
    if not isinstance(address, str):
        raise InvalidMessageError(f"must be a str, not {type(address).__name__}", field)
    if not address:
        raise InvalidMessageError(
            "is empty; an address is like user@example.org", field
        )
    bad = _CONTROL.search(address)
    if bad:
        raise _invalid(address, f"contains {bad.group()!r}", field)
    quoted = _QUOTED.match(address)
    bad = _NOT_BARE.search(address, quoted.end() if quoted else 0)
    if bad:
        why = f"contains {bad.group()!r} outside quotes; give one bare user@domain"
        raise _invalid(address, why, field)
    for char in address:
        if not char.isascii() and unicodedata.category(char)[0] in "CZ":
            raise _invalid(address, f"contains invisible U+{ord(char):04X}", field)
    local, at, domain = address.rpartition("@")
    if not (at and local and domain):
        raise _invalid(address, "is not local-part@domain", field)
    if quoted:
        if quoted.end() != len(local):
            raise _invalid(address, "has text between its quotes and '@'", field)
        local = _requoted(_QUOTED_PAIR.sub(r"\1", quoted.group(1)))
    elif "@" in local:
        raise _invalid(address, "contains more than one '@'", field)
    elif not _DOT_ATOM.fullmatch(local):
        why = "has a local part that needs quotes, or has a stray '.'"
        raise _invalid(address, why, field)
    if len(local.encode()) > MAX_LOCAL_PART:
        size = len(local.encode())
        why = f"has a local part of {size} octets; the limit is {MAX_LOCAL_PART}"
        raise _invalid(address, why, field)
    return local, domain_to_ascii(domain, field)


def _requoted(content: str) -> str:
    """Quote a local part only when it needs it (RFC 5321 §4.1.2: minimal quoting)."""
    if _DOT_ATOM.fullmatch(content):
        return content
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _readdressed(address: Address, addr_spec: str) -> Address:
    local, _, domain = addr_spec.rpartition("@")
    quoted = _QUOTED.fullmatch(local)
    username = _QUOTED_PAIR.sub(r"\1", quoted.group(1)) if quoted else local
    return Address(address.display_name, username, domain)


def _address_literal(domain: str, field: str) -> str:
    inner = domain[1:-1] if domain.endswith("]") else ""
    try:
        if inner[:5].lower() == "ipv6:" and "%" not in inner:
            ipaddress.IPv6Address(inner[5:])
            return domain
        if _IPV4.fullmatch(inner):
            ipaddress.IPv4Address(inner)
            return domain
    except ValueError:
        pass
    raise _invalid(domain, "is neither [IPv4] nor [IPv6:...]", field)


def _ascii_label(label: str, field: str) -> str:
    """Return one domain label as LDH ASCII, converting a U-label to its A-label.

    IDNA 2008 with the UTS 46 mapping (non-transitional), as browsers and
    registries use: "ß" stays "ß" (xn--strae-oqa), where IDNA 2003 made it "ss".
    """
    if label.isascii():
        if not _ASCII_LABEL.fullmatch(label):
            raise _invalid(label, "is not 1-63 letters, digits, inner hyphens", field)
        return label
    # idna is imported on first use (for its cost, not to dodge a cycle): it
    # takes some 9 ms to import, and most mail names no internationalised domain.
    import idna  # noqa: PLC0415

    try:
        a_label = idna.encode(label, uts46=True, transitional=False).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError is one
        raise _invalid(label, f"is not a valid IDN label: {exc}", field) from None
    if not _ASCII_LABEL.fullmatch(a_label):
        raise _invalid(label, "is not a valid IDN label", field)
    return a_label


def _invalid(text: object, why: str, field: str) -> InvalidMessageError:
    """Build the error for *text*, quoted, escaped and cut short."""
    shown = str(text) if len(str(text)) <= 80 else str(text)[:77] + "..."
    return InvalidMessageError(f"{shown!r} {why}", field)
