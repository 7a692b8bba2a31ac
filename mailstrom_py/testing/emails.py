"""Prepared messages for storage tests, built directly (no preparation step)."""

from __future__ import annotations

from ..message import PreparedEmail

__all__ = ["prepared_email"]


def prepared_email(n: int, *recipients: str) -> PreparedEmail:
    """Message number ``n`` (id ``m<n>@example.test``, body ``body <n>``) from
    sender@example.test to ``recipients`` (a@example.test when none are given)."""
    return PreparedEmail(
        message_id=f"m{n}@example.test",
        mail_from="sender@example.test",
        recipients=recipients or ("a@example.test",),
        data=f"Message-ID: <m{n}@example.test>\r\n\r\nbody {n}\r\n".encode(),
        smtputf8=False,
        eight_bit=False,
    )
