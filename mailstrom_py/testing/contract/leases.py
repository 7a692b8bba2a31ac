"""The contract of extending claims: an attempt that runs long keeps its
messages from other workers."""

from __future__ import annotations

import pytest

from ...status import DeliveryResult
from ...storage import QueueFilter, Storage
from .common import LEASE, Backend, claim_one, email, mid, outcome

__all__ = ["ExtendContract"]


class ExtendContract:
    """extend(): a live claim lasts longer; an ended one is refused.

    A backend that keeps :meth:`Storage.extend`'s default, which extends
    nothing, is checked only for what it refuses.
    """

    def test_an_extended_claim_keeps_its_message_until_the_new_lease_ends(
        self, storage: Backend
    ) -> None:
        """Extended just before its lease ends, a claim holds its message until
        the new end: no one claims it before, anyone may after, and its
        pending recipients say when."""
        _skip_unless_extending(storage)
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        assert storage.extend([claim], now=LEASE - 1, lease=LEASE) == [True]
        until = 2 * LEASE - 1
        status = storage.status(mid(1))
        assert [r.next_attempt_at for r in status.recipients] == [until, until]
        assert [r.attempts for r in status.recipients] == [1, 1]
        assert storage.next_due() == until
        assert storage.claim_due(now=until - 1, limit=5, lease=LEASE) == []
        again = claim_one(storage, mid(1), now=until)
        assert again.token != claim.token

    def test_an_extended_claim_records_its_outcome(self, storage: Backend) -> None:
        """Extending keeps the claim's token: its outcome is recorded, and
        recipients it does not name stay due when the extended lease ends."""
        _skip_unless_extending(storage)
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        storage.extend([claim], now=30.0, lease=LEASE)
        done = outcome(claim.status, "a@example.test", DeliveryResult.DELIVERED, None)
        after = storage.record(claim, [done])
        assert after is not None
        assert after.recipients[0] == done
        assert after.recipients[1].next_attempt_at == 30.0 + LEASE
        assert storage.status(mid(1)) == after
        assert storage.next_due() == 30.0 + LEASE

    def test_an_expired_claim_nobody_replaced_is_extended(
        self, storage: Backend
    ) -> None:
        """A claim whose lease ended is still its message's claim until another
        claim replaces it, and can be extended."""
        _skip_unless_extending(storage)
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        assert storage.extend([claim], now=LEASE + 5, lease=LEASE) == [True]
        assert storage.claim_due(now=LEASE + 6, limit=5, lease=LEASE) == []

    def test_ended_claims_are_refused_and_left_alone(self, storage: Backend) -> None:
        """A claim recorded, replaced after its lease, or whose message was
        dropped is not extended, and nothing changes; the live claims given
        with them are extended, in order."""
        for n in range(1, 5):
            storage.add(email(n), now=float(n))
        recorded = claim_one(storage, mid(1), now=1.0)
        storage.record(
            recorded,
            [
                outcome(recorded.status, r.address, DeliveryResult.DELIVERED, None)
                for r in recorded.status.recipients
            ],
        )
        replaced = claim_one(storage, mid(2), now=2.0)
        dropped = claim_one(storage, mid(3), now=3.0)
        storage.drop(QueueFilter(ids=(mid(3),)))
        live = claim_one(storage, mid(4), now=4.0)
        new = claim_one(storage, mid(2), now=2.0 + LEASE)
        before = storage.find(QueueFilter(ids=(mid(1), mid(2))))
        extended = storage.extend(
            [recorded, replaced, dropped, live], now=3.0 + LEASE, lease=LEASE
        )
        assert extended == [False, False, False, _extends(storage)]
        assert storage.find(QueueFilter(ids=(mid(1), mid(2)))) == before
        assert storage.status(mid(2)).next_attempt_at == new.status.next_attempt_at
        assert storage.extend([], now=LEASE, lease=LEASE) == []

    @pytest.mark.parametrize("lease", [0.0, -5.0, float("inf"), float("nan")])
    def test_a_bad_lease_raises_value_error(
        self, storage: Backend, lease: float
    ) -> None:
        """A lease that is not a finite time ahead raises ValueError and extends
        nothing."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        with pytest.raises(ValueError, match=r"^lease must be"):
            storage.extend([claim], now=1.0, lease=lease)
        assert storage.status(mid(1)) == claim.status


def _extends(storage: Storage) -> bool:
    """Whether ``storage`` implements extend() rather than the default."""
    return type(storage).extend is not Storage.extend


def _skip_unless_extending(storage: Storage) -> None:
    if not _extends(storage):
        pytest.skip("the backend keeps the default extend(), which extends nothing")
