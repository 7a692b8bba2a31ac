"""The MAIL command for a message, with the ESMTP parameters it needs.

A message may need what a server does not offer (SIZE room, 8BITMIME,
SMTPUTF8, REQUIRETLS); then there is no command but a refusal, decided
before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...codes import (
    CONVERSION_NOT_SUPPORTED,
    MESSAGE_TOO_BIG,
    NON_ASCII_ADDRESSES_NOT_PERMITTED,
    REQUIRETLS_NOT_SUPPORTED,
)
from ...message import PreparedEmail
from ...status import Remote
from ..tls_policy import requiretls_refusal
from .failure import parse_int

__all__ = ["MailCommand", "Unsendable", "mail_command"]


@dataclass(frozen=True)
class MailCommand:
    """The MAIL command line and the encoding the session's commands need."""

    line: str
    encoding: str


@dataclass(frozen=True)
class Unsendable:
    """Why a server cannot take a message: a permanent RFC 3463 code and words."""

    status_code: str
    detail: str


def mail_command(
    email: PreparedEmail, features: Mapping[str, str], remote: Remote
) -> MailCommand | Unsendable:
    """The MAIL command for ``email`` at a server offering ``features`` (EHLO
    keywords, lower case), or why that server cannot take it."""
    if refusal := requiretls_refusal(email, remote, features):
        return Unsendable(REQUIRETLS_NOT_SUPPORTED, refusal)
    options = ["REQUIRETLS"] if email.require_tls else []
    if "size" in features:
        limit = parse_int(features["size"])
        if limit and len(email.data) > limit:
            detail = f"{len(email.data)} octets exceed the limit of {limit}"
            return Unsendable(MESSAGE_TOO_BIG, detail)
        options.append(f"SIZE={len(email.data)}")
    if email.eight_bit:
        if "8bitmime" not in features:
            return Unsendable(
                CONVERSION_NOT_SUPPORTED,
                "the message is 8-bit and the server lacks 8BITMIME",
            )
        options.append("BODY=8BITMIME")
    encoding = "ascii"
    if email.smtputf8:
        if "smtputf8" not in features:
            return Unsendable(
                NON_ASCII_ADDRESSES_NOT_PERMITTED,
                "the message needs SMTPUTF8 and the server lacks it",
            )
        options.append("SMTPUTF8")
        encoding = "utf-8"
    return MailCommand(" ".join([f"MAIL FROM:<{email.mail_from}>", *options]), encoding)
