"""Reports on messages an operator failed: the delivery status notifications
:meth:`~mailstrom_py.Outbox.fail` queues, as the worker queues them for
recipients that fail in an attempt."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..errors import MessageNotFound, StorageError
from ..message.dsn import DsnReporter
from ..status import DeliveryResult, MessageStatus, RecipientStatus
from ..storage import Storage
from ..storage.rules import OPERATOR_FAILED

__all__ = ["operator_failures", "queue_failure_reports"]

log = logging.getLogger(__name__)


def operator_failures(status: MessageStatus) -> list[RecipientStatus]:
    """The recipients of ``status`` that the operator failed (as
    :meth:`~mailstrom_py.storage.QueueAdmin.fail` leaves them)."""
    return [
        r
        for r in status.recipients
        if r.result is DeliveryResult.FAILED and r.detail == OPERATOR_FAILED
    ]


def queue_failure_reports(
    storage: Storage,
    reporter: DsnReporter,
    failed: Sequence[MessageStatus],
    now: float,
    notify: Callable[[str], None],
) -> list[str]:
    """Store the report each failed message calls for, to its sender, and
    ``notify`` of each; return the reports' ids.

    A message dropped meanwhile, or one whose report cannot be stored, gets
    none (logged).
    """
    queued = []
    for status in failed:
        try:
            email = storage.email(status.message_id)
        except MessageNotFound:
            continue
        for report in reporter.reports(email, status, operator_failures(status), now):
            try:
                storage.add(report, now)
            except StorageError:
                log.exception("could not queue the report on %s", email.message_id)
                continue
            log.info("%s: report %s queued", email.message_id, report.message_id)
            notify(report.message_id)
            queued.append(report.message_id)
    return queued
