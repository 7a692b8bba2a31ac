"""The contract of cached MTA-STS policies, for backends that keep them
(:class:`~mailstrom_py.storage.policies.PolicyCache`); others skip it."""

from __future__ import annotations

import threading

import pytest

from ...storage.policies import MAX_POLICY_JSON, PolicyCache
from .common import Backend

__all__ = ["PolicyCacheContract"]

POLICY = '{"domain": "example.test", "id": "20260101", "policy": "version: STSv1"}'


def _cache(storage: Backend) -> PolicyCache:
    if not isinstance(storage, PolicyCache):
        pytest.skip("the backend keeps no MTA-STS policies")
    return storage


class PolicyCacheContract:
    """cached_policy() and keep_policy()."""

    def test_a_kept_policy_is_read_back_as_kept(self, storage: Backend) -> None:
        """The text kept for a domain comes back unchanged, non-ASCII and all;
        other domains have none."""
        cache = _cache(storage)
        text = POLICY.replace("STSv1", "STSv1 \u00e9\u4e2d")
        cache.keep_policy("example.test", text)
        assert cache.cached_policy("example.test") == text
        assert cache.cached_policy("other.test") is None

    def test_keeping_again_replaces_the_policy(self, storage: Backend) -> None:
        """A domain has one policy: the last one kept."""
        cache = _cache(storage)
        cache.keep_policy("example.test", POLICY)
        cache.keep_policy("example.test", POLICY.replace("20260101", "20260202"))
        assert "20260202" in (cache.cached_policy("example.test") or "")

    @pytest.mark.parametrize(
        ("domain", "text"),
        [
            ("", POLICY),
            ("exa mple.test", POLICY),
            ("example.test\n", POLICY),
            ("example.test", "{}\0"),
            ("example.test", "x" * (MAX_POLICY_JSON + 1)),
        ],
    )
    def test_a_bad_entry_is_refused_and_nothing_kept(
        self, storage: Backend, domain: str, text: str
    ) -> None:
        """An empty or spaced domain, a NUL or an oversized text is a
        ValueError, and what was kept stays."""
        cache = _cache(storage)
        cache.keep_policy("example.test", POLICY)
        with pytest.raises(ValueError, match="policy"):
            cache.keep_policy(domain, text)
        assert cache.cached_policy("example.test") == POLICY

    def test_threads_keeping_policies_at_once_lose_none(self, storage: Backend) -> None:
        """Policies kept from several threads at once are all there after."""
        cache = _cache(storage)

        def keep(k: int) -> None:
            for n in range(10):
                cache.keep_policy(f"d{k}-{n}.test", POLICY)

        threads = [threading.Thread(target=keep, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        names = [f"d{k}-{n}.test" for k in range(4) for n in range(10)]
        assert [cache.cached_policy(name) for name in names] == [POLICY] * 40
