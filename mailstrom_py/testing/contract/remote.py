"""The contract of the server an attempt talked to: a recorded recipient's
``Remote`` reads back whole, the TLS policy's strings (RFC 8460 §4.4)
included, wherever statuses are read, and survives the writes that rewrite
the recipient."""

from __future__ import annotations

import dataclasses

from ...status import DeliveryResult, MessageStatus, Remote
from ...storage import QueueFilter
from .common import Backend, claim_one, email, mid

__all__ = ["RemoteContract"]

#: An MTA-STS session's policy strings: the policy's lines as fetched, an
#: extension field with text beyond ASCII, quotes and a backslash among them.
STS_LINES = (
    "version: STSv1",
    "mode: enforce",
    "mx: mx1.d.test",
    "mx: *.d.test",
    "max_age: 86400",
    'owner: "Zoë\\Ops" [ünïcode]',
)
#: A DANE session's policy strings: TLSA records, one of them unusable.
TLSA_RECORDS = ("3 1 1 " + "ab" * 32, "1 0 1 " + "cd" * 32)


def _sessions() -> tuple[Remote, Remote, Remote]:
    """An MTA-STS session, a failed DANE session, and one without policy
    strings."""
    sts = Remote(
        "mx1.d.test",
        "192.0.2.1",
        25,
        tls_version="TLSv1.3",
        tls_verified=True,
        tls_policy="sts",
        tls_policy_domain="example.test",
        tls_result="success",
        tls_policy_strings=STS_LINES,
    )
    dane = Remote(
        "mx2.d.test",
        "2001:db8::2",
        25,
        tls_version="TLSv1.2",
        tls_policy="tlsa",
        tls_policy_domain="mail.host.test",
        tls_result="validation-failure",
        tls_failure="DANE: no record matches",
        tls_policy_strings=TLSA_RECORDS,
    )
    plain = Remote(
        "mx3.d.test",
        "192.0.2.3",
        25,
        tls_policy="no-policy-found",
        tls_policy_domain="example.test",
        tls_result="starttls-not-supported",
    )
    return sts, dane, plain


def _recorded(storage: Backend) -> tuple[MessageStatus, tuple[Remote, ...]]:
    """Message 1 to three recipients, recorded after one attempt: the first
    delivered over an MTA-STS session, the others deferred, after a failed
    DANE session and after a session with no policy."""
    recipients = ("a@example.test", "b@example.test", "c@other.test")
    storage.add(email(1, recipients), now=0.0)
    claim = claim_one(storage, mid(1), now=0.0)
    remotes = _sessions()
    delivered, *deferred = claim.status.recipients
    updates = [
        dataclasses.replace(
            delivered,
            result=DeliveryResult.DELIVERED,
            next_attempt_at=None,
            remote=remotes[0],
        ),
        *(
            dataclasses.replace(
                r,
                result=DeliveryResult.DEFERRED,
                next_attempt_at=100.0,
                remote=remote,
            )
            for r, remote in zip(deferred, remotes[1:], strict=True)
        ),
    ]
    after = storage.record(claim, updates)
    assert after is not None
    assert [r.remote for r in after.recipients] == list(remotes)
    return after, remotes


class RemoteContract:
    """A recorded ``Remote`` reads back equal, policy strings and all."""

    def test_policy_strings_read_back_equal(self, storage: Backend) -> None:
        """Every field of each recipient's Remote reads back as recorded,
        ``tls_policy_strings`` included (none stays none), from status(),
        find() and the next claim of the message."""
        after, remotes = _recorded(storage)
        for status in (
            storage.status(mid(1)),
            *storage.find(QueueFilter(ids=(mid(1),))),
            claim_one(storage, mid(1), now=100.0).before,
        ):
            assert status.recipients == after.recipients
            read = [r.remote for r in status.recipients]
            assert read == list(remotes)
            assert [r.tls_policy_strings for r in read if r is not None] == [
                STS_LINES,
                TLSA_RECORDS,
                (),
            ]

    def test_policy_strings_survive_a_rewrite_of_the_recipient(
        self, storage: Backend
    ) -> None:
        """fail() rewrites the deferred recipients: their Remotes, policy
        strings included, stay as recorded."""
        _, remotes = _recorded(storage)
        [failed] = storage.fail(QueueFilter(ids=(mid(1),)), now=50.0)
        assert [r.remote for r in failed.recipients] == list(remotes)
        read = storage.status(mid(1))
        assert [r.remote for r in read.recipients] == list(remotes)
        assert read.recipients[1].remote is not None
        assert read.recipients[1].remote.tls_policy_strings == TLSA_RECORDS
