"""Parsing: the caller's message as a private object the email package can work on.

Bytes and str are parsed (after their header section's line ends are checked);
an :class:`~email.message.EmailMessage` is copied cheaply, never changed; a
compat32 :class:`~email.message.Message` is written out and parsed again.
:class:`CachingHeaderRegistry` parses each distinct header once per message.
"""

from __future__ import annotations

import copy
import functools
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import Message
from email.parser import BytesParser, Parser
from email.policy import EmailPolicy, compat32
from typing import Any

from ..errors import InvalidMessageError
from .address import unfold
from .headers import canonical_line_ends, reject_line_breaks
from .serialise import EMAIL_ERRORS, SMTP
from .verbatim import RawMessage, read_raw

__all__ = [
    "CachingHeaderRegistry",
    "SharedHeaderRegistry",
    "parse_message",
    "reading_policy",
]

# The email package's map of header names to header classes, as every
# HeaderRegistry starts with it.
_DEFAULT_CLASSES = HeaderRegistry().registry
# The class a HeaderRegistry makes for each of those, made once: it makes a new
# one, with a body of its own, for every header it builds.
_HEADER_CLASSES: dict[object, type[BaseHeader]] = {}


class CachingHeaderRegistry(HeaderRegistry):
    """A header factory that parses each distinct header once per preparation.

    The email package re-parses a header on every read (the parser alone reads each
    part's Content-Type four times); header objects are immutable, so sharing is safe.

    Every instance maps header names to the email package's default classes, from
    one map they share: :meth:`map_to_type` is refused. The class of a header is
    made once for each kind, as HeaderRegistry makes it (the kind, then
    :class:`~email.headerregistry.BaseHeader`), and shared by every instance.
    """

    def __init__(self) -> None:
        # Not HeaderRegistry.__init__, which copies the default map for each
        # instance: one registry is made for every message prepared.
        self.registry = _DEFAULT_CLASSES
        self.base_class = BaseHeader
        self.default_class = UnstructuredHeader
        self._parsed: dict[tuple[str, str], BaseHeader] = {}

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        """Refused: the map of header classes is shared by every instance.

        Raises:
            TypeError: always.
        """
        raise TypeError(f"{type(self).__name__} keeps the default header classes")

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind: object = _DEFAULT_CLASSES.get(name.lower(), UnstructuredHeader)
        made = _HEADER_CLASSES.get(kind)
        if made is None:
            made = _HEADER_CLASSES.setdefault(kind, super().__getitem__(name))
        return made

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if type(value) is not str:
            return super().__call__(name, value)
        header = self._parsed.get((name, value))
        if header is None:
            header = self._parsed[name, value] = super().__call__(name, value)
        return header


class SharedHeaderRegistry(CachingHeaderRegistry):
    """A header factory whose parsed headers are shared by every preparation.

    For reading prepared bytes back (:func:`~.serialise.verify`): the headers
    of a message's parts (``Content-Type: text/plain; charset="utf-8"``) recur
    from message to message. Header objects are immutable and parsing only
    reads them, so threads may share them. At most :attr:`LIMIT` are kept; then
    the store starts again empty.
    """

    #: The most distinct headers kept.
    LIMIT = 512

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if len(self._parsed) >= self.LIMIT:
            self._parsed.clear()
        return super().__call__(name, value)


@functools.lru_cache(maxsize=4)
def reading_policy(cte_type: str, utf8: bool) -> EmailPolicy[Any]:
    """The policy prepared bytes are read back with (see :func:`~.serialise.verify`):
    the one they were written with, its header factory shared by every
    preparation (:class:`SharedHeaderRegistry`)."""
    return SMTP.clone(
        header_factory=SharedHeaderRegistry(),
        refold_source="none",
        cte_type=cte_type,
        utf8=utf8,
    )


def parse_message(
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
