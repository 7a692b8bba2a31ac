"""Outcomes for recipients no transaction settled, alike for every transport."""

from __future__ import annotations

from collections.abc import Sequence

from ..codes import transient
from ..status import DeliveryResult
from .base import Outcome
from .smtp import SessionFailure

__all__ = ["deferred", "unreached"]


def deferred(recipients: Sequence[str], status_code: str, detail: str) -> list[Outcome]:
    """The same deferred outcome for each of ``recipients``, with no server reply."""
    return [
        Outcome(r, DeliveryResult.DEFERRED, status_code, detail) for r in recipients
    ]


def unreached(
    recipients: Sequence[str], failures: Sequence[SessionFailure]
) -> list[Outcome]:
    """Deferred outcomes for recipients no session could take.

    Trouble reaching a server says nothing about the recipients, so they are
    deferred whatever the failures' codes: with the code, reply and server of
    the failure that says most (the last one with a server reply, else the
    last one) in its transient form, and every failure's detail in order.

    Raises:
        ValueError: ``failures`` is empty while ``recipients`` is not.
    """
    if not recipients:
        return []
    if not failures:
        raise ValueError("recipients are unreached for a reason: no failure given")
    with_reply = [f for f in failures if f.reply is not None]
    chosen = (with_reply or failures)[-1]
    detail = "; ".join(f.detail for f in failures)
    code = transient(chosen.status_code)
    return [
        Outcome(
            r, DeliveryResult.DEFERRED, code, detail, chosen.reply, remote=chosen.remote
        )
        for r in recipients
    ]
