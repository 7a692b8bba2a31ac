"""How a session fails, and the words used to describe it.

The exceptions a session raises (:class:`SessionFailure` and
:class:`StaleSessionError` for a failed session, :class:`ConnectionLost` for a
link that went down mid-step) and the helpers that phrase a failure:
``describe_remote`` (which server), ``describe_error`` (what went wrong),
``was_reset`` (whether the server reset the connection) and ``parse_int`` (the
number leading a reply text or an ESMTP parameter).
"""

from __future__ import annotations

import socket

from ...codes import BAD_CONNECTION
from ...status import Remote, SmtpReply

__all__ = [
    "ConnectionLost",
    "SessionFailure",
    "StaleSessionError",
    "describe_error",
    "describe_remote",
    "parse_int",
    "was_reset",
]


class SessionFailure(Exception):
    """Raised when a session cannot be opened or goes down before a transaction.

    Every recipient of the transaction shares the failure. ``status_code`` and the
    optional ``reply`` say why; ``permanent`` is true only when the cause cannot
    pass (never for connection or greeting trouble). ``connected`` is false when
    no TCP connection was made (refused, unreachable, timed out), ``tls_failed``
    true when the TLS handshake failed, and ``remote`` names the server when a
    connection was made.
    """

    def __init__(
        self,
        detail: str,
        status_code: str,
        reply: SmtpReply | None = None,
        *,
        permanent: bool = False,
        connected: bool = True,
        tls_failed: bool = False,
        remote: Remote | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.reply = reply
        self.permanent = permanent
        self.connected = connected
        self.tls_failed = tls_failed
        self.remote = remote


class StaleSessionError(SessionFailure):
    """Raised by :meth:`SmtpSession.send` when a kept connection turns out closed.

    Nothing of the message was accepted: open a new session and send again.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail, BAD_CONNECTION)


class ConnectionLost(Exception):
    """The connection failed (timeout, reset, EOF, garbage) in the middle of a step.

    ``reset`` is true when the server's end reset the connection (TCP RST)
    rather than closing it: it does so when bytes of ours arrive, or are still
    unread, after the server closed, and those bytes are discarded unread.
    """

    def __init__(self, detail: str, *, reset: bool = False) -> None:
        super().__init__(detail)
        self.reset = reset


def parse_int(text: str) -> int:
    try:
        return int(text.split(maxsplit=1)[0]) if text.strip() else 0
    except ValueError:
        return 0


def describe_remote(remote: Remote) -> str:
    """The server as in Postfix's logs: ``host[address]:port``, or only
    ``address:port`` when it was dialled by address."""
    if remote.host == remote.address:
        # An IPv6 address is bracketed so that its port stands apart.
        host = f"[{remote.host}]" if ":" in remote.host else remote.host
        return f"{host}:{remote.port}"
    return f"{remote.host}[{remote.address}]:{remote.port}"


def was_reset(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a connection reset
    (smtplib turns one into ``SMTPServerDisconnected``)."""
    return isinstance(exc, ConnectionResetError) or isinstance(
        exc.__context__, ConnectionResetError
    )


def describe_error(exc: BaseException) -> str:
    """What went wrong, in words: ``"timed out"`` for any timeout, whatever
    raised it, else the exception's text (or its class's name)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError | socket.timeout) or "timed out" in text:
        return "timed out"
    return text
