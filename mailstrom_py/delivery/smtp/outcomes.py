"""The outcomes of a transaction's recipients at one server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ...retry import classify_reply, status_code_for
from ...status import DeliveryResult, Remote, SmtpReply
from ..base import Outcome

__all__ = ["OutcomeBuilder"]


@dataclass(frozen=True)
class OutcomeBuilder:
    """Builds outcomes at the server ``remote``, called ``label`` in details."""

    remote: Remote
    label: str

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
        result = classify_reply(reply)
        if result is DeliveryResult.DELIVERED:
            detail = f"accepted by {self.label}: {reply}"
        else:
            detail = f"{self.label} answered {reply.step} with {reply}"
        code = status_code_for(reply)
        return self.one(address, result, code, detail, reply, rcpt_reply=rcpt_reply)

    def refused(
        self,
        recipients: Iterable[str],
        reply: SmtpReply,
        rcpt: Mapping[str, SmtpReply] | None = None,
    ) -> list[Outcome]:
        """Outcomes decided by ``reply``; ``rcpt`` holds the RCPT replies known."""
        rcpt = rcpt or {}
        return [self.from_reply(a, reply, rcpt.get(a)) for a in recipients]
