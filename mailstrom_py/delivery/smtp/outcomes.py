"""The outcomes of a transaction's recipients at one server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ...retry import classify_reply, status_code_for
from ...status import DeliveryResult, Remote, SmtpReply
from ..base import Outcome

__all__ = ["OutcomeBuilder"]


class OutcomeBuilder:
    """Builds outcomes at the server ``remote``, called ``label`` in details.

    One builder serves a session: it keeps what the last reply it read
    decided, since a server answers message after message alike (replies
    parsed alike are one object, see :meth:`SmtpReply.parse`).
    """

    __slots__ = ("_last", "label", "remote")

    def __init__(self, remote: Remote, label: str) -> None:
        self.remote = remote
        self.label = label
        self._last: tuple[SmtpReply, DeliveryResult, str, str] | None = None

    def one(
        self,
        address: str,
        result: DeliveryResult,
        code: str,
        detail: str,
        reply: SmtpReply | None = None,
        *,
        possibly_delivered: bool = False,
        rcpt_reply: SmtpReply | None = None,
    ) -> Outcome:
        """The outcome of ``address``, as given."""
        return Outcome(
            address,
            result,
            code,
            detail,
            reply,
            possibly_delivered,
            self.remote,
            rcpt_reply,
        )

    def alike(
        self,
        recipients: Iterable[str],
        result: DeliveryResult,
        code: str,
        detail: str,
        reply: SmtpReply | None = None,
        *,
        rcpt: Mapping[str, SmtpReply] | None = None,
    ) -> list[Outcome]:
        """Outcomes alike but for the RCPT replies ``rcpt`` holds."""
        rcpt = rcpt or {}
        return [
            self.one(a, result, code, detail, reply, rcpt_reply=rcpt.get(a))
            for a in recipients
        ]

    def from_reply(
        self, address: str, reply: SmtpReply, rcpt_reply: SmtpReply | None
    ) -> Outcome:
        """The outcome ``reply`` decides for ``address`` (RFC 5321 §4.2.1)."""
        last = self._last
        if last is not None and last[0] is reply:
            _, result, code, detail = last
        else:
            result = classify_reply(reply)
            if result is DeliveryResult.DELIVERED:
                detail = f"accepted by {self.label}: {reply}"
            else:
                detail = f"{self.label} answered {reply.step} with {reply}"
            code = status_code_for(reply)
            self._last = (reply, result, code, detail)
        return Outcome(
            address, result, code, detail, reply, False, self.remote, rcpt_reply
        )

    def refused(
        self,
        recipients: Iterable[str],
        reply: SmtpReply,
        rcpt: Mapping[str, SmtpReply] | None = None,
    ) -> list[Outcome]:
        """Outcomes decided by ``reply``; ``rcpt`` holds the RCPT replies known."""
        rcpt = rcpt or {}
        return [self.from_reply(a, reply, rcpt.get(a)) for a in recipients]
