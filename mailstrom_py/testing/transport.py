"""A transport that records what it would send instead of sending it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..delivery.base import Item, OnOutcome, Outcome
from ..message import PreparedEmail
from ..retry import classify_reply, status_code_for
from ..status import DeliveryResult, SmtpReply
from .sent import SentMessage

__all__ = ["RecordingTransport"]

_ACCEPTED = SmtpReply.parse(250, "2.0.0 Ok")


class RecordingTransport:
    """Records every message it is handed and reports its recipients delivered.

    A :class:`~mailstrom_py.delivery.base.BatchTransport` that opens no
    connection: give it to ``Mailstrom(config, transport=...)`` and assert on
    :attr:`sent`. Each recipient is answered ``250 2.0.0`` unless
    :meth:`reply_to` says otherwise, and the mailer records that answer as it
    would a server's: 2xx delivered, 4xx deferred (retried by the retry
    policy), 5xx failed. Safe to use from several delivery threads at once.

    Example::

        transport = RecordingTransport()
        transport.reply_to("bob@example.org", 550, "5.1.1 no such user")
        mailer = Mailstrom(config, transport=transport)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: dict[str, tuple[SmtpReply, int | None]] = {}
        self._sent: list[SentMessage] = []
        self._outcomes: list[Outcome] = []

    def __repr__(self) -> str:
        return f"<RecordingTransport: {len(self.sent)} sent>"

    @property
    def sent(self) -> list[SentMessage]:
        """What reached at least one recipient, one entry per message and
        attempt, oldest first; each lists the recipients it reached."""
        with self._lock:
            return list(self._sent)

    @property
    def outcomes(self) -> list[Outcome]:
        """Every outcome reported so far, one per recipient and attempt, in order."""
        with self._lock:
            return list(self._outcomes)

    def reply_to(
        self, address: str, code: int, text: str = "", *, times: int | None = None
    ) -> None:
        """Answer ``address`` with ``code`` and ``text`` from now on.

        The address is matched without regard to case. A 4xx reply defers the
        recipient and a 5xx one fails it, as from a server; an enhanced status
        code opening ``text`` (``"5.1.1 no such user"``) is the one recorded.
        ``times`` limits the reply to that many attempts, after which the
        recipient is accepted again; by default it lasts until replaced.

        Raises:
            ValueError: ``code`` is not a 2xx, 4xx or 5xx reply code, or
                ``times`` is not a positive integer.
        """
        klass = code // 100 if isinstance(code, int) else None
        if isinstance(code, bool) or klass not in (2, 4, 5):
            raise ValueError(f"code must be a 2xx, 4xx or 5xx reply code, not {code!r}")
        if times is not None and (
            not isinstance(times, int) or isinstance(times, bool) or times < 1
        ):
            raise ValueError(f"times must be a positive integer, not {times!r}")
        with self._lock:
            self._replies[address.lower()] = (SmtpReply.parse(code, text), times)

    def clear(self) -> None:
        """Forget what was sent and the outcomes; scripted replies stay."""
        with self._lock:
            self._sent.clear()
            self._outcomes.clear()

    def deliver(self, email: PreparedEmail, recipients: Sequence[str]) -> list[Outcome]:
        """Record ``email`` for the recipients it reaches; one outcome each."""
        with self._lock:
            outcomes = [self._answer(address) for address in recipients]
            self._outcomes.extend(outcomes)
            reached = tuple(
                o.address for o in outcomes if o.result is DeliveryResult.DELIVERED
            )
            if reached:
                self._sent.append(
                    SentMessage(email.message_id, email.mail_from, reached, email.data)
                )
        return outcomes

    def deliver_many(
        self, batch: Sequence[Item], on_outcome: OnOutcome | None = None
    ) -> list[list[Outcome]]:
        """Deliver each item of ``batch`` in turn, as :meth:`deliver` does,
        telling ``on_outcome`` (if given) of each item's outcomes at once."""
        results = []
        for index, (email, recipients) in enumerate(batch):
            outcomes = self.deliver(email, recipients)
            if on_outcome is not None:
                on_outcome(index, outcomes)
            results.append(outcomes)
        return results

    def close(self) -> None:
        """Nothing to release; kept for the transport protocol."""

    def _answer(self, address: str) -> Outcome:
        """The outcome for one recipient; call with the lock held."""
        key = address.lower()
        reply, times = self._replies.get(key, (_ACCEPTED, None))
        if times is not None:
            if times > 1:
                self._replies[key] = (reply, times - 1)
            else:
                del self._replies[key]
        return Outcome(
            address=address,
            result=classify_reply(reply),
            status_code=status_code_for(reply),
            detail=str(reply),
            reply=reply,
        )
