"""What an attempt may call for besides its outcome: reports, queued as mail.

A :class:`Reporter` is told of every recorded attempt and returns the
messages to queue: delivery status notifications
(:class:`~mailstrom_py.message.dsn.DsnReporter`), SMTP TLS reports
(:class:`~mailstrom_py.worker.tls_reports.TlsReporter`), or both through
:class:`Reporters`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..message import PreparedEmail
from ..status import MessageStatus, RecipientStatus

__all__ = ["Reporter", "Reporters"]


class Reporter(Protocol):
    """**Protocol:** the reports one recorded attempt calls for.

    Called on delivery threads, so it must be thread-safe, and it must never
    raise: a report that cannot be built is logged and dropped.
    """

    def reports(
        self,
        email: PreparedEmail,
        before: MessageStatus,
        updates: Sequence[RecipientStatus],
        now: float,
    ) -> list[PreparedEmail]:
        """The reports to queue after an attempt on ``email`` at ``now``,
        ``before`` being its status before and ``updates`` what it recorded."""
        ...  # pragma: no cover


class Reporters:
    """Several reporters as one: each is told of every attempt, in order."""

    def __init__(self, *reporters: Reporter) -> None:
        self._reporters = reporters

    def reports(
        self,
        email: PreparedEmail,
        before: MessageStatus,
        updates: Sequence[RecipientStatus],
        now: float,
    ) -> list[PreparedEmail]:
        found: list[PreparedEmail] = []
        for reporter in self._reporters:
            found.extend(reporter.reports(email, before, updates, now))
        return found
