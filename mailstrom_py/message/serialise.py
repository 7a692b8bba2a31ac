"""Serialising a checked message to SMTP bytes, and verifying those bytes.

The email package folds every header object through its general folding algorithm,
and reading the bytes back parses every header and part again. Both are exact but
slow for the common case: a header that fits on its line as it stands, and a single
text part. :class:`SmtpPolicy` and :func:`verify` take a shortcut there, with results
identical to the general way (the shortcut's conditions imply it; tests compare
both), and use the general way for everything else.
"""

from __future__ import annotations

import io
import re
import sys
from email import errors as email_errors
from email.errors import MessageError
from email.generator import BytesGenerator
from email.headerregistry import (
    AddressHeader,
    BaseHeader,
    ContentTransferEncodingHeader,
    DateHeader,
    MessageIDHeader,
    MIMEVersionHeader,
    ParameterizedMIMEHeader,
    UnstructuredHeader,
)
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from typing import TYPE_CHECKING, Any

from ..errors import InvalidMessageError
from .body import has_bare_line_end
from .headers import LINE_BREAKING, MAX_LINE, is_text_type, split_header_block

if TYPE_CHECKING:
    _EmailPolicy = EmailPolicy[Any]
else:
    _EmailPolicy = EmailPolicy

__all__ = [
    "EMAIL_ERRORS",
    "FATAL_DEFECTS",
    "SMTP",
    "SmtpPolicy",
    "fitting_line",
    "serialise",
    "single_text_part",
    "verify",
]

#: What the email package raises on input it cannot handle.
EMAIL_ERRORS = (ValueError, LookupError, TypeError, AttributeError, MessageError)
#: After these the parse is a guess: a line without a colon ends the headers early,
#: a multipart without its boundary has no parts.
FATAL_DEFECTS = (
    email_errors.MissingHeaderBodySeparatorDefect,
    email_errors.FirstHeaderLineIsContinuationDefect,
    email_errors.MisplacedEnvelopeHeaderDefect,
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.InvalidMultipartContentTransferEncodingDefect,
)
# The header kinds whose value, as str() gives it, is the text the folding
# algorithm writes: their parse() makes the one from the other.
_VERBATIM_KINDS = (
    UnstructuredHeader,
    DateHeader,
    ParameterizedMIMEHeader,
    ContentTransferEncodingHeader,
    MIMEVersionHeader,
    MessageIDHeader,
)
# Where the email package's generator ends a line of a body.
_LINE_END = re.compile(r"\r\n|\r|\n")
# What type(name, bases, {}) puts in a class's own namespace.
_BARE_CLASS = frozenset({"__module__", "__doc__"})
# The verbatim kind of each header class, or of the bases of a bare one.
_KINDS: dict[object, type | None] = {}


class SmtpPolicy(_EmailPolicy):
    """``email.policy.SMTP`` with a quick fold for a header that needs no folding.

    The general algorithm writes a header's value as it stands when it is ASCII
    without line breaks, needs no encoded word, and fits in ``max_line_length``
    after ``Name: ``; for the headers :func:`fitting_line` vouches for, this
    policy writes exactly that line without running the algorithm.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        """Fold a header for a binary generator; see :class:`EmailPolicy`."""
        if isinstance(value, BaseHeader):
            line = fitting_line(value, self.max_line_length or sys.maxsize)
            if line is not None:
                return (line + self.linesep).encode("ascii")
        return super().fold_binary(name, value)


#: Like ``email.policy.SMTP``: the default policy with CRLF line ends.
SMTP = SmtpPolicy(linesep="\r\n")


def fitting_line(header: BaseHeader, limit: int) -> str | None:
    """Return ``Name: value`` as the folding algorithm would write it, or ``None``.

    The algorithm writes ``Name:``, a space and the header's parse tree as text,
    on one line when that is ASCII, holds no line break, needs no encoded word
    and fits in *limit* characters. Only a header of the email package's own
    kinds is vouched for: unstructured text, a date that parsed, MIME headers and
    msg-ids, whose ``str()`` is that text; and address headers, whose ``str()``
    is not (it is the addresses rewritten in a standard form), so their parse
    tree is read instead: an address list, which asks for no encoded word when
    it is ASCII without line breaks.
    """
    kind = _verbatim_kind(type(header))
    if kind is None:
        return None
    if kind is DateHeader and getattr(header, "datetime", None) is None:
        return None  # a date that did not parse folds to nothing at all
    value = str(header) if kind is not AddressHeader else _tree_text(header)
    line = f"{header.name}: {value}"
    if not value or len(line) > limit or not line.isascii():
        return None
    return None if LINE_BREAKING.search(line) else line


def _tree_text(header: BaseHeader) -> str:
    """The text of an address header's parse tree, which its fold() writes;
    ``""`` for a header whose addresses are not ASCII (its tree's text is not
    either: nothing to look for)."""
    if not str(header).isascii():
        return ""
    return str(getattr(header, "_parse_tree", ""))


def _verbatim_kind(cls: type) -> type | None:
    """The verbatim kind *cls* is, if it parses and folds as that kind does.

    An address header is :class:`AddressHeader` if it folds as every header
    does: its parse tree is what it writes, however it was parsed. A subclass
    with a parser or a fold of its own (from a custom header registry) is none:
    it gets the general algorithm.
    """
    # A HeaderRegistry makes a new class for every header it builds, with no
    # body of its own: such a class is what its bases make it, and is known by
    # them, or the answers kept would grow by a class for every header.
    key = cls.__bases__ if vars(cls).keys() <= _BARE_CLASS else cls
    try:
        return _KINDS[key]
    except KeyError:
        kind = _KINDS[key] = _find_verbatim_kind(cls)
        return kind


def _find_verbatim_kind(cls: type) -> type | None:
    if issubclass(cls, AddressHeader):
        return AddressHeader if _same(cls, BaseHeader, "fold") else None
    for kind in _VERBATIM_KINDS:
        if issubclass(cls, kind):
            same = _same(cls, kind, "parse") and _same(cls, BaseHeader, "fold")
            if kind is DateHeader:  # its parse tree is read from the formatted date
                same = same and _same(cls, kind, "value_parser")
            return kind if same else None
    return None


def _same(cls: type, kind: type, name: str) -> bool:
    """Whether *cls* has the same function as *kind* under *name*."""
    mine, theirs = getattr(cls, name, None), getattr(kind, name, None)
    return getattr(mine, "__func__", mine) is getattr(theirs, "__func__", theirs)


class _Generator(BytesGenerator):
    """The email package's generator, writing a body's lines in one go.

    It writes them line by line, each line and each line end a write of its
    own: a line end after every line but the last, which has one only if the
    text ends in one. That is the text with every CRLF, CR or LF made the
    policy's line end (with no CR, every LF), the same octets; a text it cannot
    encode is written line by line, to fail as it would have.
    """

    def _write_lines(self, lines: str) -> None:
        # flatten() writes with the generator's policy, which clone() hands on.
        if self.policy is not None:
            try:
                linesep = self.policy.linesep
                if "\r" in lines:
                    self.write(_LINE_END.sub(linesep, lines))
                else:
                    self.write(lines.replace("\n", linesep))
            except UnicodeEncodeError:
                pass  # written line by line below, to fail as it would have
            else:
                return
        super()._write_lines(lines)  # type: ignore[misc]  # not in the stubs


def serialise(msg: Message, policy: EmailPolicy[Any]) -> bytes:
    """Return *msg* as bytes that end with CRLF.

    Raises:
        InvalidMessageError: the email package cannot serialise it.
    """
    buffer = io.BytesIO()
    try:
        _Generator(buffer, policy=policy).flatten(msg, unixfrom=False)
    except EMAIL_ERRORS as exc:
        raise InvalidMessageError(f"the message cannot be serialised: {exc}") from exc
    data = buffer.getvalue()
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def verify(
    data: bytes, msg: Message, policy: EmailPolicy[Any], *, ascii_only: bool
) -> None:
    """Check the final bytes against the promises of ``PreparedEmail``.

    Serialising must not change what the message says: parsed again, the bytes must
    show the same parts with the same header names, so nothing was injected, and no
    structural defect that the message did not have already.

    Raises:
        InvalidMessageError: a bare CR or LF, a line over 998 octets, 8-bit data
            where *ascii_only*, or parts or header names that differ from *msg*.
    """
    if has_bare_line_end(data):
        raise InvalidMessageError("serialising left a bare CR or LF", "body")
    lines = data.split(b"\r\n")
    if max(map(len, lines)) > MAX_LINE:
        raise InvalidMessageError(*_long_line(lines))
    if ascii_only and not data.isascii():
        raise InvalidMessageError("8-bit text remains outside any part", "body")
    expected = [[name.lower() for name in part] for part in msg.walk()]
    if len(expected) == 1 and single_text_part(data) == expected[0]:
        return
    reparsed = BytesParser(policy=policy).parsebytes(data)
    found = [[name.lower() for name in part] for part in reparsed.walk()]
    if found != expected or not _fatal(reparsed) <= _fatal(msg):
        raise InvalidMessageError("serialising changed the header fields (injection?)")


def _fatal(msg: Message) -> set[type[Exception]]:
    """The kinds of defect in *msg*'s structure after which a parse is a guess."""
    return {type(d) for d in msg.defects if isinstance(d, FATAL_DEFECTS)}


def single_text_part(data: bytes) -> list[str] | None:
    """The header names the email package reads in *data*, if it is one text part.

    ``None`` unless the header block is plain fields (so the package reads the same
    names, without defects) and any Content-Type says ``text/*`` (so the body is one
    leaf, not parts); then a full parse would find exactly these names.
    """
    split = data.find(b"\r\n\r\n")
    if split < 0 or not data[:split].isascii():
        return None
    fields = split_header_block(data[: split + 2].decode("ascii"))
    if fields is None:
        return None
    for name, value in fields:
        if name.lower() == "content-type" and not is_text_type(value):
            return None
    return [name.lower() for name, _ in fields]


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
