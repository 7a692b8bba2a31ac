"""MTA-STS policies kept in the mailer's storage (``StoredPolicies``): a copy
in memory in front of a real SQLite file, and a storage that fails never
failing a delivery."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mailstrom_py import SqliteStorage
from mailstrom_py.core.policy_store import RECHECK_ABSENT, StoredPolicies

POLICY = '{"domain": "d.test", "id": "1"}'


class CountingStorage(SqliteStorage):
    """A real SQLite storage that counts its policy reads."""

    reads = 0

    def cached_policy(self, domain: str) -> str | None:
        self.reads += 1
        return super().cached_policy(domain)


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    return CountingStorage(tmp_path / "outbox.db")


def test_a_policy_is_read_from_storage_once(storage: CountingStorage) -> None:
    """The MTA-STS code asks at every delivery: only the first question of a
    domain reaches the storage."""
    storage.keep_policy("d.test", POLICY)
    store = StoredPolicies(storage)
    assert [store.get("d.test") for _ in range(5)] == [POLICY] * 5
    assert storage.reads == 1


def test_a_domain_without_a_policy_is_looked_up_again_after_a_while(
    storage: CountingStorage,
) -> None:
    """A domain found without a policy is taken to have none for
    RECHECK_ABSENT seconds; then storage is asked again, and a policy another
    process kept in the meantime is found."""
    now = [0.0]
    store = StoredPolicies(storage, clock=lambda: now[0])
    assert store.get("d.test") is None
    storage.keep_policy("d.test", POLICY)  # as another worker would
    now[0] = RECHECK_ABSENT - 1
    assert store.get("d.test") is None
    assert storage.reads == 1
    now[0] = RECHECK_ABSENT + 1
    assert store.get("d.test") == POLICY
    assert storage.reads == 2


def test_a_kept_policy_goes_to_storage_and_is_served_from_memory(
    storage: CountingStorage, tmp_path: Path
) -> None:
    """put() writes through: another storage on the file finds the policy,
    and this store answers without a read."""
    store = StoredPolicies(storage)
    assert store.get("d.test") is None
    store.put("d.test", POLICY)
    assert store.get("d.test") == POLICY
    assert storage.reads == 1
    other = SqliteStorage(tmp_path / "outbox.db")
    try:
        assert other.cached_policy("d.test") == POLICY
    finally:
        other.close()


def test_a_failing_storage_is_logged_and_passed_over(
    storage: CountingStorage, caplog: pytest.LogCaptureFixture
) -> None:
    """With the storage closed, get() finds the copy in memory (or None) and
    put() keeps the policy in memory; neither raises, and both log."""
    store = StoredPolicies(storage)
    store.put("d.test", POLICY)
    storage.close()
    caplog.set_level(logging.WARNING)
    assert store.get("d.test") == POLICY
    assert store.get("other.test") is None
    store.put("new.test", POLICY)
    assert store.get("new.test") == POLICY
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "cannot read the cached MTA-STS policy of other.test" in m for m in messages
    )
    assert any("cannot keep the MTA-STS policy of new.test" in m for m in messages)
