"""The suppression list at work: recipients on it fail before any connection,
hard bounces put recipients on it, deliveries take them off.

The list is checked when a message is claimed for an attempt, not when it is
queued: an address may bounce, or be suppressed by hand, while mail to it waits
in the queue, and that mail must not go out either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ..codes import RECIPIENT_SUPPRESSED
from ..config import SuppressionPolicy
from ..delivery.base import Outcome
from ..errors import StorageError
from ..event import SUPPRESSED_DETAIL
from ..status import DeliveryResult, RecipientStatus, SmtpStep
from ..storage.base import Claim
from ..storage.controls import Controls, Suppression, fold_address

__all__ = ["Screened", "SuppressionGate", "suppressed_outcome"]

log = logging.getLogger("mailstrom_py.worker")

#: A claimed message's recipients split: those to deliver, and the outcomes of
#: those that fail at once because they are suppressed.
Screened = tuple[list[str], list[Outcome]]


def suppressed_outcome(address: str, entry: Suppression) -> Outcome:
    """The outcome of a recipient refused because of ``entry``: failed with
    :data:`~mailstrom_py.codes.RECIPIENT_SUPPRESSED`, saying since when and why.

    This is the one place a recipient is failed for being suppressed (where a
    "suppressed" event belongs)."""
    since = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(entry.since))
    detail = f"{SUPPRESSED_DETAIL} {since} after {entry.reason}"
    return Outcome(address, DeliveryResult.FAILED, RECIPIENT_SUPPRESSED, detail)


class SuppressionGate:
    """Applies a :class:`~mailstrom_py.SuppressionPolicy` with the list kept in
    ``controls``. Thread-safe as ``controls`` is.

    A failure of the storage while checking the list lets the mail through
    (logged at WARNING): a list that cannot be read must not stop delivery.
    """

    def __init__(self, controls: Controls, policy: SuppressionPolicy) -> None:
        self._controls = controls
        self._policy = policy
        self._codes = frozenset(policy.codes)

    def screen(self, claims: Sequence[Claim], now: float) -> list[Screened]:
        """Split each claimed message's pending recipients into those to
        deliver and the failed outcomes of those suppressed at ``now``."""
        pending = [[r.address for r in c.status.pending] for c in claims]
        if not self._policy.enabled:
            return [(addresses, []) for addresses in pending]
        everyone = [a for addresses in pending for a in addresses]
        try:
            found = self._controls.suppressed(everyone, now)
        except StorageError:
            log.warning("could not read the suppression list", exc_info=True)
            found = {}
        return [
            (
                [a for a in addresses if a not in found],
                [suppressed_outcome(a, found[a]) for a in addresses if a in found],
            )
            for addresses in pending
        ]

    def learn(self, updates: Sequence[RecipientStatus], now: float) -> None:
        """Suppress the recipients that ``updates`` show hard-bounced (the one
        place an address is suppressed automatically)."""
        if not self._policy.enabled:
            return
        bounced = [self._entry(u, now) for u in updates if self._suppresses(u)]
        if not bounced:
            return
        try:
            self._controls.suppress(bounced)
        except StorageError:
            log.warning("could not update the suppression list", exc_info=True)
            return
        for entry in bounced:
            log.info("suppressed %s: %s", entry.address, entry.reason)

    def delivered(self, addresses: Sequence[str], now: float) -> None:
        """Take ``addresses``, just delivered to, off the list: one lookup for
        a batch, and a write only when one of them is on it (suppressed after
        its message was claimed, say)."""
        if not self._policy.enabled or not addresses:
            return
        try:
            if self._controls.suppressed(addresses, now):
                for address in self._controls.unsuppress(addresses):
                    log.info("%s delivered: no longer suppressed", address)
        except StorageError:
            log.warning("could not update the suppression list", exc_info=True)

    def _suppresses(self, update: RecipientStatus) -> bool:
        """Whether ``update`` is a hard bounce of the mailbox itself: failed
        with one of the policy's codes, in the reply to its RCPT or, with no
        reply, by the library's own lookup (a null MX)."""
        if update.result is not DeliveryResult.FAILED:
            return False
        if update.status_code not in self._codes:
            return False
        reply = update.last_reply
        return reply is None or reply.step is SmtpStep.RCPT

    def _entry(self, update: RecipientStatus, now: float) -> Suppression:
        reply = update.last_reply
        if reply is None:
            reason = f"{update.status_code} {update.detail or ''}".strip()
        else:
            reason = " ".join(
                p for p in (str(reply.code), reply.enhanced, reply.text) if p
            )
        reason = " ".join(reason.split())
        return Suppression(
            fold_address(update.address), reason, now, now + self._policy.duration
        )
