"""``lookup_tlsa`` for an aliased MX host (RFC 7672 §2.2.2) and with a cache
of TLSA answers (§2.2.3), against the loopback DNS server.

The server sets the AD bit for the zones a test signs and counts the
questions it is asked; the cache runs on a clock the test moves.
"""

from __future__ import annotations

import pytest
from support.dnsd import DnsServer, DnsServerFactory, Zone

from mailstrom_py.delivery.routing.answers import MAX_TTL, AnswerCache
from mailstrom_py.delivery.routing.dane import TlsaLookup, lookup_tlsa
from mailstrom_py.delivery.routing.dnsquery import DnsAnswer

MX, EXPANDED = "mx.d.test", "h.p.test"
RECORD = "3 1 1 " + "ab" * 32
OTHER = "3 1 1 " + "cd" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def owner(host: str) -> str:
    return f"_25._tcp.{host}"


def tlsa_queries(server: DnsServer) -> list[str]:
    return [name for name, kind in server.queries if kind == "TLSA"]


@pytest.fixture
def zone() -> Zone:
    return Zone().sign("d.test").sign("p.test")


class TestBaseDomain:
    def lookup(self, server: DnsServer, expanded: str = EXPANDED) -> TlsaLookup:
        return lookup_tlsa(
            server.resolver(), MX, dnssec_trusted=True, expanded=expanded
        )

    def test_the_expanded_name_is_asked_first_and_alone_when_it_has_records(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """Records at both names: the expanded name's are used, and are the
        only ones asked for; the TLSA base domain is the expanded name."""
        zone.add(owner(EXPANDED), "TLSA", RECORD).add(owner(MX), "TLSA", OTHER)
        server = dns_server(zone)
        found = self.lookup(server)
        assert (found.host, found.base, found.status) == (MX, EXPANDED, "usable")
        assert [str(record) for record in found.records] == [RECORD]
        assert tlsa_queries(server) == [owner(EXPANDED)]

    @pytest.mark.parametrize("at_expanded", ["nothing", "unsigned records"])
    def test_the_initial_name_is_asked_next(
        self, zone: Zone, dns_server: DnsServerFactory, at_expanded: str
    ) -> None:
        """The expanded name has no records DNSSEC vouches for (none at all,
        or records without the AD bit): the initial name's are used."""
        if at_expanded == "unsigned records":
            zone.unsign("p.test").add(owner(EXPANDED), "TLSA", OTHER)
        zone.add(owner(MX), "TLSA", RECORD)
        server = dns_server(zone)
        found = self.lookup(server)
        assert (found.base, found.status) == (MX, "usable")
        assert tlsa_queries(server) == [owner(EXPANDED), owner(MX)]

    def test_no_records_at_either_name_is_absent_with_both_reasons(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """Nothing at either name: absent, and the detail names both."""
        found = self.lookup(dns_server(zone))
        assert found.status == "absent"
        assert owner(EXPANDED) in found.detail and owner(MX) in found.detail

    def test_a_failure_at_the_expanded_name_ends_the_search(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """SERVFAIL at the expanded name: failed, the initial name unasked."""
        zone.servfail(owner(EXPANDED), "TLSA").add(owner(MX), "TLSA", RECORD)
        server = dns_server(zone)
        found = self.lookup(server)
        assert (found.base, found.status) == (EXPANDED, "failed")
        assert owner(MX) not in tlsa_queries(server)

    @pytest.mark.parametrize("expanded", ["", MX, MX.upper() + "."])
    def test_a_host_that_is_no_alias_is_asked_once(
        self, zone: Zone, dns_server: DnsServerFactory, expanded: str
    ) -> None:
        """No expanded name, or the host's own: one question, at the host."""
        server = dns_server(zone.add(owner(MX), "TLSA", RECORD))
        found = self.lookup(server, expanded)
        assert (found.base, found.status) == (MX, "usable")
        assert tlsa_queries(server) == [owner(MX)]


class TestCache:
    def setup(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> tuple[DnsServer, AnswerCache[DnsAnswer], Clock]:
        clock = Clock()
        return dns_server(zone), AnswerCache[DnsAnswer](10, clock), clock

    def lookup(self, server: DnsServer, cache: AnswerCache[DnsAnswer]) -> TlsaLookup:
        return lookup_tlsa(server.resolver(), MX, dnssec_trusted=True, cache=cache)

    def test_records_are_kept_for_their_ttl(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """Records with a TTL of 120 s: asked once until then, again after."""
        zone.add(owner(MX), "TLSA", RECORD, ttl=120)
        server, cache, clock = self.setup(zone, dns_server)
        first = self.lookup(server, cache)
        clock.now += 119
        assert self.lookup(server, cache) == first
        assert first.status == "usable"
        assert len(tlsa_queries(server)) == 1
        clock.now += 1
        assert self.lookup(server, cache) == first
        assert len(tlsa_queries(server)) == 2

    def test_a_long_ttl_is_cut_to_a_day(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """A TTL of a week is kept no longer than MAX_TTL (a day)."""
        zone.add(owner(MX), "TLSA", RECORD, ttl=7 * 86400)
        server, cache, clock = self.setup(zone, dns_server)
        self.lookup(server, cache)
        clock.now += MAX_TTL
        self.lookup(server, cache)
        assert len(tlsa_queries(server)) == 2

    @pytest.mark.parametrize("signed", [True, False])
    def test_a_denial_is_kept_for_its_negative_ttl(
        self, zone: Zone, dns_server: DnsServerFactory, signed: bool
    ) -> None:
        """NXDOMAIN, signed or not, is kept for the SOA's negative TTL (60 s
        on the loopback server) and says the same from the cache, its DNSSEC
        status included."""
        if not signed:
            zone.unsign("d.test")
        server, cache, clock = self.setup(zone, dns_server)
        first = self.lookup(server, cache)
        assert first.status == "absent"
        assert ("(secure answer)" in first.detail) is signed
        clock.now += 59
        assert self.lookup(server, cache) == first
        assert len(tlsa_queries(server)) == 1
        clock.now += 1
        self.lookup(server, cache)
        assert len(tlsa_queries(server)) == 2

    def test_a_failure_is_never_kept(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """SERVFAIL, then records: the second lookup asks and finds them."""
        zone.add(owner(MX), "TLSA", RECORD).servfail(owner(MX), "TLSA")
        server, cache, _ = self.setup(zone, dns_server)
        assert self.lookup(server, cache).status == "failed"
        zone.clear_behaviour(owner(MX), "TLSA")
        assert self.lookup(server, cache).status == "usable"

    def test_answers_are_kept_per_name(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """The expanded name's denial is kept, and the initial name's records,
        each under its own name: a second lookup asks nothing."""
        zone.add(owner(MX), "TLSA", RECORD)
        server, cache, _ = self.setup(zone, dns_server)
        for _ in range(2):
            found = lookup_tlsa(
                server.resolver(),
                MX,
                dnssec_trusted=True,
                expanded=EXPANDED,
                cache=cache,
            )
            assert (found.base, found.status) == (MX, "usable")
        assert tlsa_queries(server) == [owner(EXPANDED), owner(MX)]
