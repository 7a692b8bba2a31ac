"""Which MTA-STS policy applies now: RFC 8461 §5 caching (rows E4 and E5).

The loopback DNS server publishes ``_mta-sts.d.test`` and resolves
``mta-sts.d.test`` to an HTTPS server on 127.0.0.5 with a test-CA certificate;
a fake clock moves time on. The HTTPS server's request log shows when a
policy was fetched.
"""

from __future__ import annotations

import logging
import threading

import pytest
import trustme
from support.dnsd import DnsServer, DnsServerFactory, Zone
from support.https import HttpsServer, HttpsServerFactory, Reply
from support.tls import client_context, server_context

from mailstrom_py.delivery.routing.mta_sts import (
    CachedPolicy,
    MemoryPolicyStore,
    MtaSts,
    PolicyFetcher,
    StsMode,
    StsPolicy,
)

PATH = "/.well-known/mta-sts.txt"
TXT = "_mta-sts.d.test"


def policy_body(
    mode: str = "enforce", mx: str = "mx.d.test", max_age: int = 3600
) -> bytes:
    return f"version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: {max_age}\n".encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Net:
    """The zone, DNS and HTTPS servers and clock of one test."""

    def __init__(self, zone: Zone, dns: DnsServer, https: HttpsServer, ca: trustme.CA):
        self.zone = zone
        self.dns = dns
        self.https = https
        self.ca = ca
        self.clock = Clock()
        self.store = MemoryPolicyStore()

    def publish(self, record_id: str, ttl: int = 0) -> None:
        self.zone.set(TXT, "TXT", f"v=STSv1; id={record_id}", ttl=ttl)

    def serve(self, reply: Reply) -> None:
        self.https.replies[PATH] = reply

    def fetches(self) -> int:
        return len(self.https.requests)

    def sts(self, **kwargs: object) -> MtaSts:
        fetcher = PolicyFetcher(
            self.dns.resolver(), client_context(self.ca), port=self.https.port
        )
        options: dict[str, object] = {"store": self.store, "fetch": fetcher}
        options.update(kwargs)
        return MtaSts(self.dns.resolver(), clock=self.clock, **options)  # type: ignore[arg-type]


@pytest.fixture
def net(
    dns_server: DnsServerFactory, https_server: HttpsServerFactory, ca: trustme.CA
) -> Net:
    zone = (
        Zone()
        .add("d.test", "MX", "10 mx.d.test")
        .add("mta-sts.d.test", "A", "127.0.0.5")
    )
    https = https_server(server_context(ca, "mta-sts.d.test"), host="127.0.0.5")
    https.replies[PATH] = Reply(body=policy_body())
    return Net(zone, dns_server(zone), https, ca)


def test_without_a_txt_record_there_is_no_policy_and_nothing_is_fetched(
    net: Net,
) -> None:
    """No _mta-sts record: source none, and the policy host is never asked (§3.1)."""
    outcome = net.sts().policy("d.test")
    assert (outcome.source, outcome.policy) == ("none", None)
    assert not outcome.enforced
    assert "no TXT record" in outcome.detail
    assert net.fetches() == 0


def test_a_published_policy_is_fetched_once_then_served_from_the_cache(
    net: Net,
) -> None:
    """The first lookup fetches; the next, with the same id, uses the cache."""
    net.publish("one")
    sts = net.sts()
    first = sts.policy("D.Test.")
    assert (first.source, first.record_id, first.domain) == ("fetched", "one", "d.test")
    assert first.enforced
    assert first.policy is not None and first.policy.allows("MX.d.test")
    net.clock.now += 60
    second = sts.policy("d.test")
    assert (second.source, second.policy) == ("cached", first.policy)
    assert net.fetches() == 1


def test_a_new_record_id_makes_the_policy_fetched_again(net: Net) -> None:
    """A changed id means a new policy (§3.1): fetched at once, and cached under the new id."""
    net.publish("one")
    sts = net.sts()
    sts.policy("d.test")
    net.publish("two")
    net.serve(Reply(body=policy_body(mode="testing", mx="*.d.test")))
    outcome = sts.policy("d.test")
    assert (outcome.source, outcome.record_id) == ("fetched", "two")
    assert outcome.policy == StsPolicy(StsMode.TESTING, ("*.d.test",), 3600)
    assert not outcome.enforced
    assert sts.policy("d.test").source == "cached"
    assert net.fetches() == 2


def test_a_policy_expires_after_max_age_and_is_fetched_again(net: Net) -> None:
    """Past max_age the cached policy no longer applies, even with the same id."""
    net.publish("one")
    sts = net.sts()
    sts.policy("d.test")
    net.clock.now += 3599
    assert sts.policy("d.test").source == "cached"
    net.clock.now += 1
    assert sts.cached("d.test") is None
    assert sts.policy("d.test").source == "fetched"
    assert net.fetches() == 2


def test_a_failed_fetch_keeps_the_cached_policy(net: Net) -> None:
    """E4: a new id, then a 500: the cached, unexpired policy still applies (§5)."""
    net.publish("one")
    sts = net.sts()
    fetched = sts.policy("d.test")
    net.publish("two")
    net.serve(Reply(500))
    outcome = sts.policy("d.test")
    assert (outcome.source, outcome.policy, outcome.record_id) == (
        "cached",
        fetched.policy,
        "one",
    )
    assert outcome.enforced
    assert "HTTP status 500" in outcome.detail
    assert outcome.result_type == "sts-policy-fetch-error"


@pytest.mark.parametrize("trouble", ["removed", "servfail"])
def test_a_missing_record_or_dns_trouble_keeps_the_cached_policy(
    net: Net, trouble: str
) -> None:
    """E5: the TXT record gone or SERVFAIL: keep enforcing the cached policy (§5)."""
    net.publish("one")
    sts = net.sts()
    sts.policy("d.test")
    if trouble == "removed":
        net.zone.remove(TXT)
    else:
        net.zone.servfail(TXT)
    outcome = sts.policy("d.test")
    assert (outcome.source, outcome.enforced) == ("cached", True)
    assert outcome.detail
    assert net.fetches() == 1


def test_dns_trouble_without_a_cached_policy_leaves_no_policy_available(
    net: Net,
) -> None:
    """SERVFAIL and nothing cached: unavailable, with the DNS error as the detail."""
    net.zone.servfail(TXT)
    outcome = net.sts().policy("d.test")
    assert (outcome.source, outcome.policy) == ("unavailable", None)
    assert "SERVFAIL" in outcome.detail
    assert outcome.result_type is None


def test_a_failed_fetch_without_a_cached_policy_is_retried_only_after_a_while(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed fetch gives unavailable and a warning; the same id is not fetched again for 5 min."""
    net.publish("one")
    net.serve(Reply(404))
    sts = net.sts()
    with caplog.at_level(logging.WARNING):
        outcome = sts.policy("d.test")
    assert (outcome.source, outcome.record_id) == ("unavailable", "one")
    assert outcome.result_type == "sts-policy-fetch-error"
    assert "cannot fetch the MTA-STS policy of d.test" in caplog.text
    net.serve(Reply(body=policy_body()))
    net.clock.now += 299
    assert sts.policy("d.test").source == "unavailable"
    assert net.fetches() == 1
    net.clock.now += 1
    assert sts.policy("d.test").source == "fetched"
    assert net.fetches() == 2


def test_a_new_id_is_fetched_at_once_even_after_a_failure(net: Net) -> None:
    """The retry pause is per record id: a new id is fetched straight away."""
    net.publish("one")
    net.serve(Reply(404))
    sts = net.sts()
    sts.policy("d.test")
    net.publish("two")
    net.serve(Reply(body=policy_body()))
    assert sts.policy("d.test").source == "fetched"


def test_an_expired_policy_is_not_used_when_the_fetch_fails(net: Net) -> None:
    """Past max_age, a failed fetch leaves no policy, not the stale one."""
    net.publish("one")
    sts = net.sts()
    sts.policy("d.test")
    net.clock.now += 3600
    net.serve(Reply(500))
    assert sts.policy("d.test").source == "unavailable"


def test_refresh_fetches_even_with_the_same_id_and_keeps_the_cache_if_it_fails(
    net: Net,
) -> None:
    """refresh=True (§5.1, before an enforce failure is final) always fetches."""
    net.publish("one")
    sts = net.sts()
    sts.policy("d.test")
    net.serve(Reply(body=policy_body(mx="new-mx.d.test")))
    refreshed = sts.policy("d.test", refresh=True)
    assert refreshed.source == "fetched"
    assert refreshed.policy is not None and refreshed.policy.mx == ("new-mx.d.test",)
    net.serve(Reply(500))
    kept = sts.policy("d.test", refresh=True)
    assert (kept.source, kept.policy) == ("cached", refreshed.policy)
    assert net.fetches() == 3


def test_a_mode_none_policy_replaces_an_enforced_one(net: Net) -> None:
    """A domain withdraws its policy with mode none and a new id (§8.3)."""
    net.publish("one")
    sts = net.sts()
    assert sts.policy("d.test").enforced
    net.publish("two")
    net.serve(Reply(body=b"version: STSv1\nmode: none\nmax_age: 60\n"))
    outcome = sts.policy("d.test")
    assert outcome.policy is not None and outcome.policy.mode is StsMode.NONE
    assert not outcome.enforced


def test_the_store_carries_policies_to_a_new_instance(net: Net) -> None:
    """Policies live in the store, so a restarted MtaSts uses them without fetching."""
    net.publish("one")
    net.sts().policy("d.test")
    stored = net.store.get("d.test")
    assert stored is not None
    assert CachedPolicy.from_json(stored).record_id == "one"
    assert net.sts().policy("d.test").source == "cached"
    assert net.fetches() == 1


def test_a_corrupt_stored_entry_is_ignored_with_a_warning(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable stored policy counts as none: fetched again, and logged."""
    net.publish("one")
    net.store.put("d.test", "{not json")
    with caplog.at_level(logging.WARNING):
        assert net.sts().policy("d.test").source == "fetched"
    assert "ignoring the cached MTA-STS policy of d.test" in caplog.text


def test_the_txt_record_is_not_asked_again_within_its_ttl(net: Net) -> None:
    """Within the TXT record's TTL the cached policy is used without a DNS query."""
    net.publish("one", ttl=120)
    sts = net.sts()
    sts.policy("d.test")
    asked = net.dns.queries.count((TXT, "TXT"))
    net.clock.now += 119
    assert sts.policy("d.test").source == "cached"
    assert net.dns.queries.count((TXT, "TXT")) == asked
    net.clock.now += 1
    sts.policy("d.test")
    assert net.dns.queries.count((TXT, "TXT")) == asked + 1


def test_threads_asking_at_once_share_one_fetch(net: Net) -> None:
    """Eight threads asking for one domain at once cause one fetch, and all get the policy."""
    net.publish("one")
    net.serve(Reply(body=policy_body(), drip=0.002))
    sts = net.sts()
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(sts.policy("d.test").source))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["cached"] * 7 + ["fetched"]
    assert net.fetches() == 1


def test_by_default_policies_are_fetched_from_port_443_with_the_systems_cas(
    net: Net,
) -> None:
    """MtaSts(resolver) alone dials mta-sts.d.test port 443 (nothing listens there)."""
    net.publish("one")
    outcome = MtaSts(net.dns.resolver()).policy("d.test")
    assert (outcome.source, outcome.result_type) == (
        "unavailable",
        "sts-policy-fetch-error",
    )
    assert "127.0.0.5 port 443" in outcome.detail


def test_a_missing_record_is_not_asked_again_within_its_negative_ttl(
    net: Net,
) -> None:
    """No record and nothing cached: the answer is kept for the zone's negative
    TTL (60 s from the test server), then asked again, and a record published
    since is found then."""
    sts = net.sts()
    assert sts.policy("d.test").source == "none"
    asked = net.dns.queries.count((TXT, "TXT"))
    net.publish("one", ttl=60)
    net.clock.now += 59
    assert sts.policy("d.test").source == "none"
    assert net.dns.queries.count((TXT, "TXT")) == asked
    net.clock.now += 1
    assert sts.policy("d.test").source == "fetched"
    assert net.dns.queries.count((TXT, "TXT")) == asked + 1
