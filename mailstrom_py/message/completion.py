"""Completing the header: Date and Message-ID when missing, msg-ids checked.

Both ways of preparing a message complete its header here, so that they give
identical bytes. :class:`MessageIds` makes the ids of messages that come without
one.
"""

from __future__ import annotations

import functools
import os
import random
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from ..errors import InvalidMessageError
from .address import domain_to_ascii, unfold
from .headers import FOLD_AT

__all__ = ["MessageIds", "complete_headers", "given_message_id"]

# The email package folds a long msg-id into encoded words, which breaks threading.
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_ID_TEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_MSG_ID = re.compile(rf"<{_ID_TEXT}@(?:{_ID_TEXT}|\[[!-Z^-~]*\])>")
# An id all the same: printable ASCII but blanks and angle brackets.
_ID_TOKEN = re.compile(r"[!-;=?-~]+")
_COMMENT = re.compile(r"\([^()\\]*\)")
# Generated id-lefts: 128 bits from a generator of this module's own, seeded from
# os.urandom and seeded again in a forked child, so no two processes share a
# sequence. Not os.urandom itself: it gives up the GIL, and winning it back
# behind busy delivery threads costs the caller a switch interval.
_IDS = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_IDS.seed)


class MessageIds:
    """Makes the Message-IDs of one host: 128 random bits in hex, at its name.

    Args:
        helo_name: the host's name; its A-label is the right half of every id.
        rng: where the bits come from. By default a generator of this module's
            own, seeded from ``os.urandom`` and seeded again in a forked child, so
            that no two processes share a sequence; a seeded one makes ids
            reproducible (for tests).
    """

    def __init__(self, helo_name: str, rng: random.Random | None = None) -> None:
        self._helo_name = helo_name
        self._rng = rng if rng is not None else _IDS

    def new(self) -> str:
        """Return a new ``<id-left@id-right>``.

        Raises:
            InvalidMessageError: the host's name is not a valid domain.
        """
        return f"<{self._rng.getrandbits(128):032x}@{_id_right(self._helo_name)}>"


def given_message_id(message_id: str) -> str:
    """Return ``<message_id>``, the id a caller chose for a message without one.

    Raises:
        InvalidMessageError: *message_id* is not one ``id-left@id-right``.
    """
    return _msg_id(message_id)


def complete_headers(
    headers: Iterable[tuple[str, Any]],
    *,
    now: datetime,
    new_message_id: Callable[[], str],
) -> tuple[list[tuple[str, Any]], str]:
    """Add Date and Message-ID when missing; check and tidy the msg-id headers.

    A Message-ID is reduced to its one ``<id-left@id-right>`` (comments and
    blanks around it go); one that is not a msg-id but names one id all the same
    (``<xxxx>``, or ``a@b`` without brackets) goes as written, and that is the
    id. In-Reply-To and References are refolded at spaces. Other values are kept
    as they are.

    Args:
        headers: the message's header fields, in order.
        now: the time a missing Date header gives.
        new_message_id: called for the ``<id-left@id-right>`` of a message
            without a Message-ID (:meth:`MessageIds.new`, or the caller's choice
            through :func:`given_message_id`).

    Returns:
        The headers to send, and the message id without angle brackets.

    Raises:
        InvalidMessageError: the Message-ID header names no id or several, or
            *new_message_id* raised it.
    """
    completed: list[tuple[str, Any]] = []
    msg_id = None
    dated = False
    for field in headers:
        name, value = field
        key = name.lower()
        dated = dated or key == "date"
        if key == "message-id":
            sent, found = _checked_msg_id(name, value)
            msg_id = found if msg_id is None else msg_id
            completed.append((name, sent))
        elif key in _ID_HEADERS:
            completed.append((name, _refolded(name, value)))
        else:
            completed.append(field)
    if not dated:
        completed.append(("Date", _date_header(now)))
    if msg_id is None:
        generated = new_message_id()
        completed.append(("Message-ID", generated))
        msg_id = generated[1:-1]
    return completed, msg_id


def _date_header(when: datetime) -> str:
    """Return *when* as a Date header says it (RFC 5322 §3.3).

    The same text as :func:`email.utils.format_datetime`: to the second, in the
    datetime's own zone (``-0000`` when it has none).
    """
    if when.tzinfo is UTC:
        return _utc_date(
            (when.year, when.month, when.day, when.hour, when.minute, when.second)
        )
    return format_datetime(when)


@functools.lru_cache(maxsize=4)
def _utc_date(fields: tuple[int, int, int, int, int, int]) -> str:
    # Formatting is most of the cost of completing the headers, and messages
    # prepared within the same second share their Date.
    return format_datetime(datetime(*fields, tzinfo=UTC))


def _msg_id(text: object) -> str:
    """Return ``<text>`` if *text* is one ``id-left@id-right``."""
    match = _MSG_ID.fullmatch(f"<{text}>") if isinstance(text, str) else None
    if match is None:
        raise InvalidMessageError(f"{text!r} is not id-left@id-right", "message_id")
    return match.group()


@functools.lru_cache(maxsize=8)
def _id_right(helo_name: str) -> str:
    """The right half of the msg-ids made at *helo_name*, checked once: any
    32 hex digits before it make a msg-id.

    Raises:
        InvalidMessageError: *helo_name* is not a valid domain.
    """
    # A mailer sends every message with the same HELO name.
    right = domain_to_ascii(helo_name, "helo_name")
    _msg_id(f"{0:032x}@{right}")
    return right


def _checked_msg_id(name: str, value: Any) -> tuple[Any, str]:
    """Return a Message-ID header's value to send, and its id without brackets."""
    text = str(unfold(value))
    bare = _COMMENT.sub(" ", text).strip() if "(" in text else text.strip()
    match = _MSG_ID.fullmatch(bare)
    if match:
        return match.group(), match.group()[1:-1]
    # Not a msg-id (RFC 5322 §3.6.4), but one id all the same: merely
    # non-conforming, so it goes as it came (as text: the email package may fold
    # a header object into encoded words).
    inner = bare[1:-1] if bare[:1] == "<" and bare[-1:] == ">" else bare
    if text.isascii() and _ID_TOKEN.fullmatch(inner):
        return value if type(value) is str else text, inner
    shown = str(value)[:80]
    raise InvalidMessageError(f"{shown!r} names no one id for the message", name)


def _refolded(name: str, value: Any) -> Any:
    """Return In-Reply-To or References folded at spaces (ASCII text only)."""
    if not str(value).isascii():
        return value
    words = str(unfold(value)).split()
    lines = [" ".join(words[:1])]
    for word in words[1:]:
        if len(name) + len(lines[-1]) + len(word) + 3 > FOLD_AT:
            lines.append(word)
        else:
            lines[-1] += " " + word
    return "\r\n ".join(lines)
