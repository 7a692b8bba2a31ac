"""Strict checks of one address: the addr-spec and its domain.

Nothing here routes on :func:`email.utils.parseaddr` or
:func:`email.utils.getaddresses`: before CPython 3.11.10 they misread crafted input
(CVE-2023-27043). Each addr-spec is checked against the RFC 5321 grammar instead, with
the RFC 6531 extension for UTF-8 local parts. Address headers, and the envelope read
from them, are :mod:`.envelope`'s.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from email.headerregistry import Address, BaseHeader
from typing import Any

from ..errors import InvalidMessageError

__all__ = [
    "MAX_ADDRESS",
    "MAX_DOMAIN",
    "MAX_LOCAL_PART",
    "address_error",
    "domain_to_ascii",
    "is_plain",
    "simple_addresses",
    "unfold",
    "validate_address",
    "with_addr_spec",
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
    if isinstance(address, str) and is_plain(address):
        return address, False
    local, domain = _split_address(address, field)
    addr_spec = f"{local}@{domain}"
    if len(addr_spec.encode()) > MAX_ADDRESS:
        size = len(addr_spec.encode())
        raise address_error(
            address, f"is {size} octets; the limit is {MAX_ADDRESS}", field
        )
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
        raise address_error(
            domain, f"is {size} octets; the limit is {MAX_DOMAIN}", field
        )
    return ascii_domain


def unfold(value: Any) -> Any:
    """Undo the folding of raw header text; header objects are already unfolded."""
    if isinstance(value, str) and not isinstance(value, BaseHeader):
        return _FOLDING.sub("", value) if "\n" in value or "\r" in value else value
    return value


def simple_addresses(text: str) -> list[str] | None:
    """Read a plain address list: the addr-specs, or ``None`` if it is not one.

    Plain lists are what most mail carries: comma-separated ``a@b.c``,
    ``Name <a@b.c>`` or ``"Name" <a@b.c>``, ASCII only. The addr-specs are not
    checked further than that grammar; :func:`validate_address` does.
    """
    if not _SIMPLE_LIST.fullmatch(text):
        return None
    found = [m[1] or m[2] for m in _SIMPLE_MAILBOX.finditer(text)]
    return found if len(found) == text.count("@") else None


def is_plain(address: str) -> bool:
    """Whether *address* is an ASCII dot-atom addr-spec within the RFC 5321 limits.

    Such an address is valid, and :func:`validate_address` keeps it as it is.
    """
    return (
        _ASCII_ADDRESS.fullmatch(address) is not None
        and len(address) <= MAX_ADDRESS
        and address.rindex("@") <= MAX_LOCAL_PART
    )


def _split_address(address: object, field: str) -> tuple[str, str]:
    """Return the normalised local part and the ASCII domain of *address*."""
    text = _one_bare_address(address, field)
    local, at, domain = text.rpartition("@")
    if not (at and local and domain):
        raise address_error(text, "is not local-part@domain", field)
    return _local_part(text, local, field), domain_to_ascii(domain, field)


def _one_bare_address(address: object, field: str) -> str:
    """Return *address* if it is a str that can only be one bare addr-spec."""
    if not isinstance(address, str):
        raise InvalidMessageError(f"must be a str, not {type(address).__name__}", field)
    if not address:
        raise InvalidMessageError(
            "is empty; an address is like user@example.org", field
        )
    bad = _CONTROL.search(address)
    if bad:
        raise address_error(address, f"contains {bad.group()!r}", field)
    quoted = _QUOTED.match(address)
    bad = _NOT_BARE.search(address, quoted.end() if quoted else 0)
    if bad:
        why = f"contains {bad.group()!r} outside quotes; give one bare user@domain"
        raise address_error(address, why, field)
    for char in address:
        if not char.isascii() and unicodedata.category(char)[0] in "CZ":
            raise address_error(address, f"contains invisible U+{ord(char):04X}", field)
    return address


def _local_part(address: str, local: str, field: str) -> str:
    """Check the local part of *address*; return it minimally quoted."""
    quoted = _QUOTED.match(address)
    if quoted:
        if quoted.end() != len(local):
            raise address_error(address, "has text between its quotes and '@'", field)
        local = _requoted(_QUOTED_PAIR.sub(r"\1", quoted.group(1)))
    elif "@" in local:
        raise address_error(address, "contains more than one '@'", field)
    elif not _DOT_ATOM.fullmatch(local):
        why = "has a local part that needs quotes, or has a stray '.'"
        raise address_error(address, why, field)
    if len(local.encode()) > MAX_LOCAL_PART:
        size = len(local.encode())
        why = f"has a local part of {size} octets; the limit is {MAX_LOCAL_PART}"
        raise address_error(address, why, field)
    return local


def _requoted(content: str) -> str:
    """Quote a local part only when it needs it (RFC 5321 §4.1.2: minimal quoting)."""
    if _DOT_ATOM.fullmatch(content):
        return content
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'


def with_addr_spec(address: Address, addr_spec: str) -> Address:
    """Return *address* (a header's mailbox) with its addr-spec replaced."""
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
    raise address_error(domain, "is neither [IPv4] nor [IPv6:...]", field)


def _ascii_label(label: str, field: str) -> str:
    """Return one domain label as LDH ASCII, converting a U-label to its A-label.

    IDNA 2008 with the UTS 46 mapping (non-transitional), as browsers and
    registries use: "ß" stays "ß" (xn--strae-oqa), where IDNA 2003 made it "ss".
    """
    if label.isascii():
        if not _ASCII_LABEL.fullmatch(label):
            raise address_error(
                label, "is not 1-63 letters, digits, inner hyphens", field
            )
        return label
    # idna is imported on first use (for its cost, not to dodge a cycle): it
    # takes some 9 ms to import, and most mail names no internationalised domain.
    import idna  # noqa: PLC0415

    try:
        a_label = idna.encode(label, uts46=True, transitional=False).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError is one
        raise address_error(label, f"is not a valid IDN label: {exc}", field) from None
    if not _ASCII_LABEL.fullmatch(a_label):
        raise address_error(label, "is not a valid IDN label", field)
    return a_label


def address_error(text: object, why: str, field: str) -> InvalidMessageError:
    """Build the error for the address *text*: quoted, escaped and cut short."""
    shown = str(text) if len(str(text)) <= 80 else str(text)[:77] + "..."
    return InvalidMessageError(f"{shown!r} {why}", field)
