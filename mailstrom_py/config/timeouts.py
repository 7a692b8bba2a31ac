"""Per-step SMTP timeouts."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import check_timeout

__all__ = ["Timeouts"]


@dataclass(frozen=True)
class Timeouts:
    """Per-step SMTP timeouts in seconds (RFC 5321 §4.5.3.2).

    Each is a deadline for one whole step, however slowly its bytes come or go
    (a server sending its reply a byte at a time is cut off when the step's time
    is up), and never for a whole transaction, so a slow but live server is not
    cut off. The defaults are Postfix's, which meet the RFC's minimums.

    Attributes:
        connect: opening the TCP connection (and the TLS handshake for implicit TLS).
        greeting: the 220 greeting; also each of EHLO/HELO, STARTTLS, the
            STARTTLS handshake and AUTH.
        mail: the reply to MAIL FROM.
        rcpt: the reply to each RCPT TO.
        data_init: the 354 reply to DATA.
        data_block: sending the message content and its final dot.
        data_done: the reply after the final dot. A timeout here may mean the
            message was delivered, so it is the longest.
        quit: the reply to RSET and QUIT.
    """

    connect: float = 30.0
    greeting: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_block: float = 180.0
    data_done: float = 600.0
    quit: float = 20.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            check_timeout(getattr(self, name), name)

    @classmethod
    def uniform(cls, seconds: float) -> Timeouts:
        """Return timeouts that are all ``seconds`` (handy for tests and tools)."""
        return cls(*(seconds,) * len(cls.__dataclass_fields__))
