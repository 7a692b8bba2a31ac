"""The MTA-STS TXT record, ``_mta-sts.<domain>``: parsing and lookup (RFC 8461 §3.1).

The record says that a domain has a policy and which version of it is current
(``v=STSv1; id=20240101T000000;``); a new ``id`` tells senders to fetch the
policy again. Parsing follows the RFC's ABNF to the letter: one malformed
record means the domain has no usable record, not a guess at what it meant.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..dnsquery import query

if TYPE_CHECKING:
    import dns.resolver

__all__ = [
    "RecordAnswer",
    "RecordError",
    "StsRecord",
    "choose_record",
    "lookup_record",
    "parse_record",
]

_VERSION = "v=STSv1"
# RFC 8461 §3.1: only records beginning with exactly "v=STSv1;" count.
_PREFIX = _VERSION + ";"
_DELIMITER = re.compile(r"[ \t]*;[ \t]*")
_FIELD = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,31})=([\x21-\x3a\x3c\x3e-\x7e]+)")
_ID = re.compile(r"[A-Za-z0-9]{1,32}")


class RecordError(ValueError):
    """An MTA-STS TXT record that breaks RFC 8461 §3.1's syntax."""


@dataclass(frozen=True)
class StsRecord:
    """A valid ``_mta-sts`` TXT record.

    Attributes:
        id: the policy's version, 1 to 32 letters and digits; a change means a
            new policy to fetch (RFC 8461 §3.1).
        extensions: other ``key=value`` fields, in order (ignored by senders).
    """

    id: str
    extensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RecordAnswer:
    """What the DNS says about a domain's MTA-STS record.

    Attributes:
        record: the one valid record, or None when the domain has none usable.
        ttl: seconds the DNS answer may be kept.
        detail: why there is no record (empty when there is one).
    """

    record: StsRecord | None
    ttl: int = 0
    detail: str = ""


def parse_record(text: str) -> StsRecord:
    """Parse one TXT record (its strings already joined) as an MTA-STS record.

    Raises:
        RecordError: not ``v=STSv1`` first, a malformed field, or no ``id``.
    """
    fields = _DELIMITER.split(text)
    if fields[0] != _VERSION:
        raise RecordError(f"does not start with {_VERSION!r}: {text!r}")
    if fields[-1] == "":
        fields.pop()  # a final delimiter is allowed
    record_id: str | None = None
    extensions: list[tuple[str, str]] = []
    for field in fields[1:]:
        match = _FIELD.fullmatch(field)
        if match is None:
            raise RecordError(f"malformed field {field!r} in {text!r}")
        key, value = match.groups()
        if key != "id":
            extensions.append((key, value))
        elif record_id is None:  # RFC 8461 §3.2: the first of a repeated field counts
            if not _ID.fullmatch(value):
                raise RecordError(f"malformed id {value!r} in {text!r}")
            record_id = value
    if record_id is None:
        raise RecordError(f"no id in {text!r}")
    return StsRecord(record_id, tuple(extensions))


def choose_record(texts: Iterable[str]) -> StsRecord:
    """Pick the MTA-STS record among a name's TXT records (RFC 8461 §3.1).

    Records not beginning with ``v=STSv1;`` are discarded; exactly one must be
    left, and it must be valid.

    Raises:
        RecordError: none left, more than one, or the one is malformed.
    """
    candidates = [text for text in texts if text.startswith(_PREFIX)]
    if not candidates:
        raise RecordError("no TXT record begins with 'v=STSv1;'")
    if len(candidates) > 1:
        raise RecordError(f"{len(candidates)} TXT records begin with 'v=STSv1;'")
    return parse_record(candidates[0])


def lookup_record(
    resolver: dns.resolver.Resolver, domain: str, *, deadline: float | None = None
) -> RecordAnswer:
    """Look up and choose the MTA-STS record of ``domain`` (an A-label name).

    ``deadline`` is a ``time.monotonic()`` value; by default the resolver's
    lifetime from now. No record, no valid record and several records all
    mean the domain has no usable record (RFC 8461 §3.1).

    Raises:
        DnsTrouble: the DNS could not say (SERVFAIL, a timeout...): the
            domain may well have a record.
    """
    if deadline is None:
        deadline = time.monotonic() + resolver.lifetime
    name = "_mta-sts." + domain.rstrip(".")
    answer = query(resolver, name, "TXT", deadline=deadline)
    if answer.kind != "data":
        return RecordAnswer(None, answer.ttl, f"{name}: no TXT record")
    texts: list[str] = []
    for rdata in answer.records:
        strings: tuple[bytes, ...] = rdata.strings  # type: ignore[attr-defined]
        # RFC 8461 §3.1: a record of several strings is read as one string.
        texts.append(b"".join(strings).decode("ascii", "replace"))
    try:
        record = choose_record(texts)
    except RecordError as exc:
        return RecordAnswer(None, answer.ttl, f"{name}: {exc}")
    return RecordAnswer(record, answer.ttl)
