"""Reading a message as ``sendmail`` does, and completing its header.

Programs that hand mail to ``sendmail`` (cron, ``mail``, scripts) write a
message that is often unfinished: no From, bare user names such as ``root``,
no header at all, or an mbox ``From `` line first. :func:`complete` finishes
it the way a Unix mailer does, touching only what it must; the library's
preparation checks and completes the rest (Date, Message-ID, line ends).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.utils import formataddr, getaddresses
from typing import BinaryIO

__all__ = ["addresses", "complete", "qualify", "read_message"]

# RFC 5322 §2.2: a field name is printable US-ASCII except the colon.
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_ADDRESS_FIELDS = frozenset(
    {b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc"}
    | {b"resent-from", b"resent-sender", b"resent-to", b"resent-cc", b"resent-bcc"}
)


def read_message(stream: BinaryIO, *, dot_ends: bool) -> bytes:
    """Read a message from ``stream``.

    Args:
        stream: where the message comes from.
        dot_ends: a line holding a single ``.`` ends the message, as sendmail
            reads standard input unless given ``-i`` or ``-oi``; the line and
            anything after it are not part of the message.
    """
    if not dot_ends:
        return stream.read()
    lines = []
    for line in stream:
        if line in (b".\n", b".\r\n", b"."):
            break
        lines.append(line)
    return b"".join(lines)


def qualify(address: str, domain: str) -> str:
    """Return ``address`` with ``@domain`` added when it has no domain of its
    own (``root`` becomes ``root@domain``), as sendmail qualifies local names."""
    return address if "@" in address or not address else f"{address}@{domain}"


def addresses(text: str) -> list[str]:
    """Return the addresses in ``text``: one address or a comma-separated list,
    each bare or as ``Name <address>``."""
    return [address for _, address in getaddresses([text]) if address]


def complete(message: bytes, *, domain: str, sender: str, full_name: str) -> bytes:
    """Finish a message for preparation, leaving the rest of it byte for byte.

    - A first line ``From ...`` (an mbox separator, not a header) is removed.
    - In address fields (From, Sender, Reply-To, To, Cc, Bcc and their
      Resent- forms), a field holding a name without a domain is rewritten
      with every address qualified with ``domain``.
    - Without a From field, ``From: full_name <sender>`` is added first.
    - The header ends at the first empty line, or at the first line that is
      not a field: then the text from that line on is the body, and an empty
      line is put before it (so ``echo hello | sendmail ...`` works).
    """
    lines = list(_lines(message))
    if lines and lines[0].startswith(b"From "):
        del lines[0]
    fields, body, separated = _split(lines)
    newline = b"\r\n" if fields and fields[0].endswith(b"\r\n") else b"\n"
    fields = [_qualified(field, domain, newline) for field in fields]
    if not any(_name(field) == b"from" for field in fields):
        author = formataddr((full_name, sender)).encode("utf-8")
        fields.insert(0, b"From: " + author + newline)
    if fields and not fields[-1].endswith(b"\n"):
        fields[-1] += newline  # a header without a final line end
    return b"".join(fields) + (separated or newline) + body


def _lines(data: bytes) -> Iterator[bytes]:
    """Split ``data`` after each LF, keeping every byte (a bare CR stays put)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


def _split(lines: list[bytes]) -> tuple[list[bytes], bytes, bytes]:
    """Return the header fields (each with its continuation lines), the body,
    and the empty line that separated them (``b""`` when there was none)."""
    fields: list[bytes] = []
    for index, line in enumerate(lines):
        if line in (b"\n", b"\r\n"):
            return fields, b"".join(lines[index + 1 :]), line
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        elif _FIELD.match(line):
            fields.append(line)
        else:
            return fields, b"".join(lines[index:]), b""
    return fields, b"", b""


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def _qualified(field: bytes, domain: str, newline: bytes) -> bytes:
    """Return ``field``, rewritten if it is an address field naming a local
    user without a domain."""
    name, _, raw = field.partition(b":")
    if name.strip().lower() not in _ADDRESS_FIELDS:
        return field
    value = " ".join(raw.decode("utf-8", "surrogateescape").split())
    found = getaddresses([value])
    if not any(address and "@" not in address for _, address in found):
        return field
    try:
        rebuilt = ", ".join(
            formataddr((shown, qualify(address, domain)))
            for shown, address in found
            if address
        )
        return name + b": " + rebuilt.encode("ascii") + newline
    except UnicodeError:
        return field  # a non-ASCII address: left for preparation to judge
