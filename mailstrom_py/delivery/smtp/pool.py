"""Idle SMTP sessions kept open for the next message to the same server."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

from .failure import StaleSessionError
from .session import SmtpSession

__all__ = ["SessionPool"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Seconds to wait for a QUIT reply from each idle session when the pool closes.
_SHUTDOWN_QUIT_WAIT = 2.0


@dataclass
class _Idle:
    session: SmtpSession
    since: float


class SessionPool:
    """Keeps sessions between deliveries, per destination. Thread-safe.

    A delivery thread :meth:`take` s an idle session for its destination (or
    gets ``None`` and opens one), runs its transactions, and :meth:`give` s it
    back. A session is closed instead of kept once it has carried
    ``max_messages`` messages, has been idle for ``idle_timeout`` seconds, or is
    known to be broken. A kept session is always between transactions (a
    transaction that ended early was closed with RSET), so the next MAIL needs
    no RSET before it; a server that dropped the idle connection shows as
    :class:`~mailstrom_py.delivery.smtp.StaleSessionError` before anything of
    the next message was accepted, and the transport opens a new session.

    Args:
        max_messages: messages one session may carry; 1 disables reuse.
        idle_timeout: seconds an unused session is kept.
        clock: monotonic seconds, for tests.
    """

    def __init__(
        self,
        *,
        max_messages: int = 100,
        idle_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_messages = max_messages
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: dict[Hashable, list[_Idle]] = {}
        self._closed = False

    def take(self, key: Hashable) -> SmtpSession | None:
        """Return a live idle session for ``key``, or ``None`` if there is none."""
        while True:
            with self._lock:
                stack = self._idle.get(key)
                if not stack:
                    return None
                idle = stack.pop()
            if self._clock() - idle.since <= self._idle_timeout:
                return idle.session
            idle.session.close()

    def room(self, session: SmtpSession, max_messages: int | None = None) -> int:
        """How many more messages ``session`` may carry before :meth:`give`
        closes it; at least 1 for a new session or one taken from the pool.
        ``max_messages`` is its destination's limit, when it has one of its own;
        the pool's own limit holds as well."""
        limit = self._limit(max_messages)
        return max(limit, 1) - session.messages

    def give(
        self, key: Hashable, session: SmtpSession, max_messages: int | None = None
    ) -> None:
        """Keep ``session`` for the next delivery to ``key``, or close it (it
        has carried ``max_messages``, or the pool's limit)."""
        limit = self._limit(max_messages)
        if not session.alive or session.messages >= limit or limit <= 1:
            session.close()
            return
        now = self._clock()
        expired: list[SmtpSession] = []
        with self._lock:
            if self._closed:
                expired.append(session)
            else:
                self._idle.setdefault(key, []).append(_Idle(session, now))
                for stack in self._idle.values():
                    while stack and now - stack[0].since > self._idle_timeout:
                        expired.append(stack.pop(0).session)
        for stale in expired:
            stale.close()

    def use(
        self,
        key: Hashable,
        session: SmtpSession,
        send: Callable[[SmtpSession], _T],
        *,
        reopen: Callable[[], SmtpSession],
        max_messages: int | None = None,
    ) -> _T:
        """Return ``send(session)``, then :meth:`give` the session back for ``key``
        (with ``max_messages``).

        A kept session may turn out closed by the server before anything of
        its message was accepted (:class:`StaleSessionError`); then ``send``
        runs once more, on a new session from ``reopen``, which goes back
        instead.

        Raises:
            SessionFailure: ``reopen`` could not open a session.
        """
        try:
            return send(session)
        except StaleSessionError as stale:
            log.info("kept connection was closed: %s", stale.detail)
        finally:
            self.give(key, session, max_messages)
        fresh = reopen()
        try:
            return send(fresh)
        finally:
            self.give(key, fresh, max_messages)

    def _limit(self, max_messages: int | None) -> int:
        if max_messages is None:
            return self._max_messages
        return min(self._max_messages, max_messages)

    def close(self) -> None:
        """Close every idle session; later :meth:`give` calls close theirs."""
        with self._lock:
            self._closed = True
            idle = [i.session for stack in self._idle.values() for i in stack]
            self._idle.clear()
        for session in idle:
            # Shutting down: a server slow to answer QUIT must not hold up
            # stop() for a full command timeout per session.
            session.close(quit_wait=_SHUTDOWN_QUIT_WAIT)
