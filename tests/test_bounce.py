"""Bounce classification: the enhanced status code and the reply text name
the cause of a deferral or refusal."""

from __future__ import annotations

import pytest

from mailstrom_py import BounceCategory, classify

C = BounceCategory

CASES = [
    # An enhanced code that names one cause wins over the text.
    ("5.1.1", "no such user", C.BAD_MAILBOX),
    ("5.1.1", "rate limited", C.BAD_MAILBOX),
    ("5.1.10", "recipient domain has a null MX", C.BAD_DOMAIN),
    ("5.1.2", "bad destination system", C.BAD_DOMAIN),
    ("5.2.1", "account disabled", C.INACTIVE_MAILBOX),
    ("4.2.2", "", C.MAILBOX_FULL),
    ("5.2.2", "mailbox full", C.MAILBOX_FULL),
    ("4.7.28", "Our system has detected an unusual rate", C.RATE_LIMITED),
    ("4.7.650", "The mail server IP is temporarily rate limited", C.RATE_LIMITED),
    ("5.7.26", "Unauthenticated email is not accepted", C.SENDER_CONFIG),
    ("5.7.515", "Access denied, sending domain does not meet", C.SENDER_CONFIG),
    ("5.7.25", "The IP address has no PTR record", C.SENDER_CONFIG),
    ("4.7.5", "certificate verify failed", C.TLS),
    ("5.7.30", "REQUIRETLS not supported", C.TLS),
    ("4.4.1", "connection refused", C.CONNECTION),
    ("4.4.3", "DNS lookup timed out", C.DNS),
    ("5.4.4", "unable to route", C.ROUTING),
    ("5.4.7", "delivery time expired", C.EXPIRED),
    ("5.3.4", "message too big", C.CONTENT),
    # A code that says little: the text decides.
    ("4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred", C.RATE_LIMITED),
    ("5.7.1", "Message rejected as spam", C.POLICY),
    ("5.7.1", "listed on Spamhaus", C.POLICY),
    ("5.0.0", "User unknown", C.BAD_MAILBOX),
    ("4.0.0", "Mailbox over quota", C.MAILBOX_FULL),
    ("5.7.1", "SPF check failed", C.SENDER_CONFIG),
    ("5.6.0", "virus found in attachment", C.CONTENT),
    # No code at all.
    (None, "421 Too many connections from your IP", C.RATE_LIMITED),
    (None, "Recipient address rejected: User unknown in virtual table", C.BAD_MAILBOX),
    (None, "TLS handshake failed", C.TLS),
    (None, None, C.OTHER),
    ("junk", "nothing useful", C.OTHER),
    # Nothing in the text: the subject of the code.
    ("5.7.99", "", C.POLICY),
    ("5.6.9", "", C.CONTENT),
    ("5.5.2", "syntax error", C.PROTOCOL),
    ("4.3.0", "internal error", C.OTHER),
    ("4.2.0", "mailbox busy", C.OTHER),
]


@pytest.mark.parametrize(("code", "text", "category"), CASES)
def test_classify(code: str | None, text: str | None, category: BounceCategory) -> None:
    """Each (code, text) falls in the category the table gives."""
    assert classify(code, text) is category


def test_only_address_categories_blame_the_recipient() -> None:
    """A sender-side refusal (authentication, policy, rate) is no reason to
    stop mailing the address; a bad or disabled mailbox is."""
    blamed = {c for c in BounceCategory if c.recipient_fault}
    assert blamed == {C.BAD_MAILBOX, C.BAD_DOMAIN, C.INACTIVE_MAILBOX}
    assert classify("5.7.26", "dmarc").recipient_fault is False
