"""The message list and one message's details, as the dashboard shows them.

A list is selected by a :class:`MessageQuery`: state, recipient domain,
recipient, envelope sender and age, all turned into a
:class:`~mailstrom_py.QueueFilter`. The ``queued`` and ``delivered`` states
are narrowed here, in Python, among the first :data:`SENDER_SCAN` messages the
rest selects (a filter says "has a deferred recipient", not "has none").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from ..config.loader import parse_duration
from ..errors import MessageNotFound
from ..message import PreparedEmail
from ..status import MessageStatus
from ..storage import QueueFilter
from .facts import STATES, count_state, state_filter, state_of
from .source import QueueSource

__all__ = [
    "BODY_LIMIT",
    "LIST_STATES",
    "MAX_LIMIT",
    "SENDER_SCAN",
    "MessageDetail",
    "MessageList",
    "MessageQuery",
    "Row",
    "header_fields",
    "list_messages",
    "message_detail",
    "parse_age",
]

#: The states the list can be filtered by: a message's states, and the two
#: groups ``pending`` (queued, deferred or held) and ``completed``.
LIST_STATES = (*STATES, "pending", "completed")
#: The most messages one list shows.
MAX_LIMIT = 1000
#: How many messages the filters select at most, when the state is matched in
#: Python.
SENDER_SCAN = 5000
#: How much of a body is shown, in bytes.
BODY_LIMIT = 256 * 1024
_PARAMS = ("state", "domain", "recipient", "sender", "older_than", "newer_than")


def parse_age(text: str) -> float:
    """Return the seconds in an age: ``90`` (seconds), ``90s``, ``15m``, ``2h``,
    ``3d`` or a sum such as ``1h30m``.

    Raises:
        ValueError: ``text`` is no such age.
    """
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():
        return float(stripped)
    seconds = parse_duration(stripped)
    if seconds is None:
        raise ValueError(f"{text!r} is not an age such as 90, 90s, 15m, 2h or 3d")
    return seconds


@dataclass(frozen=True)
class MessageQuery:
    """Which messages the list shows; empty strings count as not given.

    Attributes:
        state: one of :data:`LIST_STATES`.
        domain: a recipient domain.
        recipient: a recipient address.
        sender: the envelope sender (ASCII letters compared without case).
        older_than: an age, as :func:`parse_age` reads it.
        newer_than: an age.
        limit: show at most this many, the oldest first (1 to :data:`MAX_LIMIT`).

    Raises:
        ValueError: a state, age or limit that is not one.
    """

    state: str | None = None
    domain: str | None = None
    recipient: str | None = None
    sender: str | None = None
    older_than: str | None = None
    newer_than: str | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        for name in _PARAMS:
            value = getattr(self, name)
            object.__setattr__(self, name, value.strip() or None if value else None)
        if self.state is not None and self.state not in LIST_STATES:
            raise ValueError(
                f"unknown state {self.state!r}; one of {', '.join(LIST_STATES)}"
            )
        for age in (self.older_than, self.newer_than):
            if age is not None:
                parse_age(age)
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}, not {self.limit}")

    @classmethod
    def from_params(cls, params: Mapping[str, Sequence[str]]) -> MessageQuery:
        """Build a query from URL parameters (the last of each name counts).

        Raises:
            ValueError: a value is not valid.
        """
        given = {name: params[name][-1] for name in _PARAMS if params.get(name)}
        limit = cls.limit
        text = params["limit"][-1].strip() if params.get("limit") else ""
        if text:
            if not (text.isascii() and text.isdigit()):
                raise ValueError(f"limit must be a number, not {text!r}")
            limit = int(text)
        return cls(**given, limit=limit)

    def params(self) -> dict[str, str]:
        """The URL parameters that give this query back (defaults left out)."""
        shown = {n: getattr(self, n) for n in _PARAMS if getattr(self, n)}
        if self.limit != MessageQuery.limit:
            shown["limit"] = str(self.limit)
        return shown

    def base(self, now: float) -> QueueFilter:
        """The filter of every criterion but the state."""
        older = None if self.older_than is None else parse_age(self.older_than)
        newer = None if self.newer_than is None else parse_age(self.newer_than)
        return QueueFilter(
            domain=self.domain,
            recipient=self.recipient,
            sender=self.sender,
            created_before=None if older is None else now - older,
            created_after=None if newer is None else now - newer,
        )


@dataclass(frozen=True)
class Row:
    """One message of the list."""

    status: MessageStatus
    state: str
    sender: str
    subject: str | None
    size: int


@dataclass(frozen=True)
class MessageList:
    """A selection of messages.

    Attributes:
        rows: the messages shown, oldest first.
        total: how many messages the query selects in all.
        partial: the state was matched among the first :data:`SENDER_SCAN`
            messages only, and more may match.
    """

    rows: tuple[Row, ...]
    total: int
    partial: bool


def list_messages(queue: QueueSource, query: MessageQuery, now: float) -> MessageList:
    """Return the messages ``query`` selects, the oldest first."""
    base = query.base(now)
    selecting, excluded = _selection(query.state, base)
    in_python = excluded is not None
    fetch = SENDER_SCAN if in_python else query.limit
    statuses = queue.find(selecting, fetch)
    rows = _rows(queue, statuses, query, narrow=in_python)
    if excluded is not None and query.state is not None:
        total = count_state(queue, query.state, base)
    else:
        total = queue.count(selecting)
    partial = in_python and len(statuses) >= fetch and len(rows) < query.limit
    return MessageList(tuple(rows), total, partial)


def _selection(
    state: str | None, base: QueueFilter
) -> tuple[QueueFilter, QueueFilter | None]:
    if state is None:
        return base, None
    if state == "pending":
        return dataclasses.replace(base, completed=False), None
    if state == "completed":
        return dataclasses.replace(base, completed=True), None
    return state_filter(state, base)


def _rows(
    queue: QueueSource,
    statuses: list[MessageStatus],
    query: MessageQuery,
    *,
    narrow: bool,
) -> list[Row]:
    """The rows of ``statuses`` in the query's state (when ``narrow``), at
    most its limit."""
    rows: list[Row] = []
    for status in statuses:
        if len(rows) == query.limit:
            break
        if narrow and state_of(status) != query.state:
            continue
        try:
            email = queue.email(status.message_id)
        except MessageNotFound:
            continue  # dropped meanwhile
        rows.append(_row(status, email))
    return rows


def _row(status: MessageStatus, email: PreparedEmail) -> Row:
    header, _ = split_message(email.data)
    subject = header_value(header_fields(header), "Subject")
    return Row(status, state_of(status), email.mail_from, subject, len(email.data))


@dataclass(frozen=True)
class MessageDetail:
    """One message with what the page shows of its stored bytes.

    Attributes:
        status: its delivery status.
        state: its state (see :func:`~.facts.state_of`).
        email: the stored message.
        header: the header section as text (undecodable bytes replaced).
        fields: the header fields, unfolded and decoded: ``(name, value)``.
        body: the body as text when asked for, at most :data:`BODY_LIMIT`
            bytes of it; ``None`` otherwise.
        body_truncated: the body is longer than what ``body`` holds.
    """

    status: MessageStatus
    state: str
    email: PreparedEmail
    header: str
    fields: tuple[tuple[str, str], ...]
    body: str | None = None
    body_truncated: bool = False

    @property
    def subject(self) -> str | None:
        return header_value(self.fields, "Subject")

    @property
    def from_(self) -> str | None:
        return header_value(self.fields, "From")


def message_detail(
    queue: QueueSource, message_id: str, *, with_body: bool = False
) -> MessageDetail:
    """Return the details of one message, its body only ``with_body``.

    Raises:
        MessageNotFound: the id is unknown.
    """
    status = queue.status(message_id)
    email = queue.email(message_id)
    header, body = split_message(email.data)
    shown = None if not with_body else body[:BODY_LIMIT].decode("utf-8", "replace")
    return MessageDetail(
        status=status,
        state=state_of(status),
        email=email,
        header=header.decode("utf-8", "replace"),
        fields=tuple(header_fields(header)),
        body=shown,
        body_truncated=with_body and len(body) > BODY_LIMIT,
    )


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """Split a stored message into its header section and its body."""
    header, sep, body = data.partition(b"\r\n\r\n")
    if not sep and header.startswith(b"\r\n"):
        return b"", header[2:]  # no header at all
    return header + (b"\r\n" if sep else b""), body


def header_fields(header: bytes) -> list[tuple[str, str]]:
    """The fields of a header section, unfolded, their values decoded
    (UTF-8, and RFC 2047 encoded words); undecodable bytes are replaced."""
    fields: list[tuple[str, str]] = []
    for line in header.decode("utf-8", "replace").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
    return [(name, _decoded(value)) for name, value in fields]


def _decoded(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, UnicodeError, LookupError, ValueError):
        return value


def header_value(fields: Sequence[tuple[str, str]], name: str) -> str | None:
    """The value of the first field called ``name`` (any case), or ``None``."""
    wanted = name.lower()
    for field_name, value in fields:
        if field_name.lower() == wanted:
            return value
    return None
