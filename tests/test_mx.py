"""MX resolution against a real DNS server on loopback: RFC 5321 §5.1 and RFC 7505.

Each test builds a zone, serves it with the loopback DNS server and asks an
``MxResolver`` (dnspython underneath) for the route to a domain.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from support.dnsd import DnsServer, DnsServerFactory, Zone

from mailstrom_py import ConfigError, DirectConfig
from mailstrom_py.delivery.routing import MxResolver, Route, RouteError, build_resolver


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver_for(
    server: DnsServer, *, lifetime: float = 2.0, **kwargs: object
) -> MxResolver:
    return MxResolver(server.resolver(timeout=1.0, lifetime=lifetime), **kwargs)  # type: ignore[arg-type]


def names(route: Route) -> list[str]:
    return [host.name for host in route.hosts]


def route_error(resolver: MxResolver, domain: str) -> RouteError:
    with pytest.raises(RouteError) as info:
        resolver.route(domain)
    return info.value


@pytest.fixture
def zone() -> Zone:
    return Zone()


class TestOrdering:
    def test_hosts_are_sorted_by_preference(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """B8: exchangers come most preferred first, whatever the wire order."""
        for pref, host, address in [(30, "c", "3"), (10, "a", "1"), (20, "b", "2")]:
            zone.add("d.test", "MX", f"{pref} {host}.d.test")
            zone.add(f"{host}.d.test", "A", f"127.0.0.{address}")
        route = resolver_for(dns_server(zone)).route("d.test")
        assert names(route) == ["a.d.test", "b.d.test", "c.d.test"]
        assert [h.preference for h in route.hosts] == [10, 20, 30]
        assert not route.implicit

    def test_equal_preferences_are_shuffled_and_never_passed(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """B9: every order of three equal hosts occurs; the less preferred stays last."""
        for host in ("a", "b", "c"):
            zone.add("d.test", "MX", f"10 {host}.d.test")
            zone.add(f"{host}.d.test", "A", "127.0.0.2")
        zone.add("d.test", "MX", "20 z.d.test").add("z.d.test", "A", "127.0.0.3")
        resolver = resolver_for(dns_server(zone), rng=random.Random(5))
        orders = Counter(tuple(names(resolver.route("d.test"))) for _ in range(300))
        assert len(orders) == 6  # all 3! orders of the equal hosts
        assert all(order[-1] == "z.d.test" for order in orders)

    def test_a_repeated_exchanger_is_listed_once(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """The same host under two MX records is one exchanger, at its best preference."""
        zone.add("d.test", "MX", "10 mx.d.test").add("d.test", "MX", "20 mx.d.test")
        zone.add("mx.d.test", "A", "127.0.0.2")
        route = resolver_for(dns_server(zone)).route("d.test")
        assert [(h.name, h.preference) for h in route.hosts] == [("mx.d.test", 10)]

    def test_addresses_are_split_by_family(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """An exchanger's IPv6 and IPv4 addresses are both kept (RFC 5321 §5.1)."""
        zone.add("d.test", "MX", "10 mx.d.test")
        zone.add("mx.d.test", "A", "127.0.0.2").add("mx.d.test", "AAAA", "::1")
        [host] = resolver_for(dns_server(zone)).route("d.test").hosts
        assert (host.ipv6, host.ipv4) == (("::1",), ("127.0.0.2",))

    def test_only_as_many_exchangers_as_needed_are_resolved(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """Exchangers past the address limit are not looked up at all."""
        zone.add("d.test", "MX", "10 a.d.test").add("d.test", "MX", "20 b.d.test")
        zone.add("a.d.test", "A", "127.0.0.2").add("a.d.test", "A", "127.0.0.3")
        zone.add("b.d.test", "A", "127.0.0.4")
        server = dns_server(zone)
        route = resolver_for(server).route("d.test", want_addresses=2)
        assert names(route) == ["a.d.test"]
        assert not any(name == "b.d.test" for name, _ in server.queries)


class TestNullAndImplicitMx:
    def test_null_mx_fails_with_5_1_10_before_any_address_lookup(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """B7: "MX 0 ." fails permanently with 556 5.1.10 (RFC 7505 §4.2)."""
        zone.add("d.test", "MX", "0 .").add("d.test", "A", "127.0.0.2")
        server = dns_server(zone)
        error = route_error(resolver_for(server), "d.test")
        assert (error.status_code, error.permanent) == ("5.1.10", True)
        assert error.detail.startswith("556 5.1.10")
        assert server.queries == [("d.test", "MX")]

    def test_a_null_mx_among_real_ones_is_ignored(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """A "." mixed with real exchangers (against RFC 7505 §3) is skipped."""
        zone.add("d.test", "MX", "0 .").add("d.test", "MX", "10 mx.d.test")
        zone.add("mx.d.test", "A", "127.0.0.2")
        assert names(resolver_for(dns_server(zone)).route("d.test")) == ["mx.d.test"]

    def test_no_mx_records_means_the_domain_is_its_own_exchanger(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """B2: NOERROR without MX data gives the implicit MX, the domain's A/AAAA."""
        zone.add("d.test", "A", "127.0.0.2")
        route = resolver_for(dns_server(zone)).route("d.test")
        assert route.implicit
        assert [(h.name, h.ipv4) for h in route.hosts] == [("d.test", ("127.0.0.2",))]

    def test_with_mx_records_the_domain_address_is_never_used(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """RFC 5321 §5.1: once MX records exist, the domain's A record is not asked."""
        zone.add("d.test", "MX", "10 mx.d.test").add("d.test", "A", "127.0.0.9")
        zone.add("mx.d.test", "A", "127.0.0.2")
        server = dns_server(zone)
        route = resolver_for(server).route("d.test")
        assert [h.ipv4 for h in route.hosts] == [("127.0.0.2",)]
        assert ("d.test", "A") not in server.queries

    def test_no_mx_and_no_address_fails(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """B3: a name with neither MX nor A/AAAA records fails with 5.4.4."""
        zone.add("d.test", "TXT", "v=spf1 -all")
        error = route_error(resolver_for(dns_server(zone)), "d.test")
        assert (error.status_code, error.permanent) == ("5.4.4", True)


class TestDnsFailures:
    def test_nxdomain_fails(self, zone: Zone, dns_server: DnsServerFactory) -> None:
        """B1: a domain that does not exist fails permanently with 5.4.4."""
        zone.add("other.test", "A", "127.0.0.2")
        error = route_error(resolver_for(dns_server(zone)), "nx.test")
        assert (error.status_code, error.permanent) == ("5.4.4", True)
        assert "no such domain" in error.detail

    def test_a_name_that_is_no_dns_name_fails_for_good(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """A domain with a label past 63 octets is never asked about: 5.1.2,
        permanent, with the same words as every other DNS question gives."""
        server = dns_server(zone)
        error = route_error(resolver_for(server), "a" * 64 + ".test")
        assert (error.status_code, error.permanent) == ("5.1.2", True)
        assert "is not a DNS name" in error.detail
        assert server.queries == []

    @pytest.mark.parametrize(
        ("behaviour", "words"),
        [("servfail", "SERVFAIL"), ("refused", "REFUSED"), ("drop", "timed out")],
    )
    def test_server_trouble_is_transient(
        self, zone: Zone, dns_server: DnsServerFactory, behaviour: str, words: str
    ) -> None:
        """B4/B5/B6: SERVFAIL, REFUSED and a timeout are transient, 4.4.3."""
        zone.add("d.test", "MX", "10 mx.d.test")
        getattr(zone, behaviour)("d.test")
        resolver = resolver_for(dns_server(zone), lifetime=0.5)
        error = route_error(resolver, "d.test")
        assert (error.status_code, error.permanent) == ("4.4.3", False)
        assert words in error.detail

    def test_no_exchanger_with_an_address_fails(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """B10: when no exchanger's name exists, the domain fails with 5.4.4."""
        zone.add("d.test", "MX", "10 a.gone.test").add("d.test", "MX", "20 b.gone.test")
        error = route_error(resolver_for(dns_server(zone)), "d.test")
        assert (error.status_code, error.permanent) == ("5.4.4", True)
        assert "a.gone.test" in error.detail and "b.gone.test" in error.detail

    def test_one_exchanger_lookup_in_trouble_makes_it_transient(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """B10: no address found but one lookup failed (SERVFAIL): 4.4.3, not 5.4.4."""
        zone.add("d.test", "MX", "10 a.gone.test").add("d.test", "MX", "20 b.d.test")
        zone.add("b.d.test", "A", "127.0.0.2").servfail("b.d.test")
        error = route_error(resolver_for(dns_server(zone)), "d.test")
        assert (error.status_code, error.permanent) == ("4.4.3", False)

    def test_a_domain_takes_at_most_twice_the_lifetime(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """B5: three exchangers whose lookups all time out cost two lifetimes, not
        seven: the rest count as DNS trouble (4.4.3)."""
        for host in ("a", "b", "c"):
            zone.add("d.test", "MX", f"10 {host}.d.test").drop(f"{host}.d.test")
        server = dns_server(zone)
        started = time.monotonic()
        error = route_error(resolver_for(server, lifetime=0.5), "d.test")
        elapsed = time.monotonic() - started
        assert (error.status_code, error.permanent) == ("4.4.3", False)
        assert 0.9 < elapsed < 2.5
        assert len(server.queries) < 7
        assert "no time left" in error.detail

    def test_exchangers_without_addresses_are_skipped(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """An exchanger that does not resolve is left out; the others are used."""
        zone.add("d.test", "MX", "10 a.gone.test").add("d.test", "MX", "20 b.d.test")
        zone.add("b.d.test", "A", "127.0.0.2")
        assert names(resolver_for(dns_server(zone)).route("d.test")) == ["b.d.test"]

    def test_one_family_in_trouble_does_not_hide_the_other(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """A SERVFAIL for AAAA still leaves the A records usable."""
        zone.add("d.test", "MX", "10 mx.d.test").add("mx.d.test", "A", "127.0.0.2")
        zone.servfail("mx.d.test", "AAAA")
        [host] = resolver_for(dns_server(zone)).route("d.test").hosts
        assert host.ipv4 == ("127.0.0.2",)


class TestCnames:
    def test_a_domain_that_is_an_alias_uses_the_target_mx(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """RFC 5321 §5.1: a CNAME'd domain is handled as the name it points to."""
        zone.add("alias.test", "CNAME", "real.test").add("real.test", "MX", "10 mx.t")
        zone.add("mx.t", "A", "127.0.0.2")
        assert names(resolver_for(dns_server(zone)).route("alias.test")) == ["mx.t"]

    def test_an_exchanger_that_is_an_alias_is_followed(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """An MX host behind a CNAME (tolerated, as MTAs do) yields its target's address."""
        zone.add("d.test", "MX", "10 mx.d.test").add("mx.d.test", "CNAME", "h.d.test")
        zone.add("h.d.test", "A", "127.0.0.2")
        [host] = resolver_for(dns_server(zone)).route("d.test").hosts
        assert (host.name, host.ipv4) == ("mx.d.test", ("127.0.0.2",))

    def test_an_exchanger_tells_the_name_its_cnames_lead_to(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """An aliased MX host keeps its name and tells the fully expanded one
        (DANE's first TLSA base domain, RFC 7672 §2.2.2), from the cache as
        from the DNS; a host that is no alias tells none."""
        zone.add("d.test", "MX", "10 mx.d.test").add("d.test", "MX", "20 mx2.d.test")
        zone.add("mx.d.test", "CNAME", "c.d.test").add("c.d.test", "CNAME", "H.D.test")
        zone.add("h.d.test", "AAAA", "::1").add("mx2.d.test", "A", "127.0.0.3")
        resolver = resolver_for(dns_server(zone))
        for _ in range(2):
            hosts = resolver.route("d.test").hosts
            assert [(h.name, h.expanded) for h in hosts] == [
                ("mx.d.test", "h.d.test"),
                ("mx2.d.test", ""),
            ]

    def test_a_route_tells_the_name_its_domains_cnames_lead_to(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """A recipient domain that is an alias tells its fully expanded name
        (a DANE-TA reference identifier, RFC 7672 §3.2.2), from the MX
        answer, or for an implicit MX from the address answer, cached or
        not; a domain that is no alias tells none."""
        zone.add("alias.test", "CNAME", "Real.test").add("real.test", "MX", "10 mx.t")
        zone.add("mx.t", "A", "127.0.0.2")
        zone.add("bare.test", "CNAME", "host.test").add("host.test", "A", "127.0.0.3")
        resolver = resolver_for(dns_server(zone))
        for _ in range(2):
            assert resolver.route("alias.test").expanded == "real.test"
            implicit = resolver.route("bare.test")
            assert (implicit.implicit, implicit.expanded) == (True, "host.test")
            assert resolver.route("real.test").expanded == ""

    def test_a_chain_within_the_bound_is_followed(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """A chain of seven CNAMEs (the default bound is eight) resolves."""
        for hop in range(7):
            zone.add(f"c{hop}.test", "CNAME", f"c{hop + 1}.test")
        zone.add("c7.test", "MX", "10 mx.t").add("mx.t", "A", "127.0.0.2")
        assert names(resolver_for(dns_server(zone)).route("c0.test")) == ["mx.t"]

    def test_a_chain_past_the_bound_is_transient(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """More CNAMEs than the bound is a 4.4.3 failure, never followed further."""
        for hop in range(3):
            zone.add(f"c{hop}.test", "CNAME", f"c{hop + 1}.test")
        zone.add("c3.test", "MX", "10 mx.t").add("mx.t", "A", "127.0.0.2")
        resolver = resolver_for(dns_server(zone), max_cname_chain=2)
        error = route_error(resolver, "c0.test")
        assert (error.status_code, error.permanent) == ("4.4.3", False)
        assert "CNAME" in error.detail
        assert names(resolver_for(dns_server(zone), max_cname_chain=3).route("c0.test"))

    def test_a_cname_loop_is_transient(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """A loop of CNAMEs (the server gives up with SERVFAIL) defers."""
        zone.add("a.test", "CNAME", "b.test").add("b.test", "CNAME", "a.test")
        error = route_error(resolver_for(dns_server(zone)), "a.test")
        assert (error.status_code, error.permanent) == ("4.4.3", False)


class TestDnssec:
    """``MxResolver(dnssec=True)`` tells whether the MX records and each
    exchanger's address records came authenticated (the AD bit), CNAMEs
    leading to them included: what DANE needs (RFC 7672 §2.2.1, §2.2.2).
    ``zone.sign`` makes the loopback server set the AD bit, as a validating
    resolver would, for the names under an apex."""

    def test_a_signed_domain_and_exchanger_are_authentic(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """MX and address records in a signed zone: both authentic."""
        zone.add("d.test", "MX", "10 mx.d.test").add("mx.d.test", "A", "127.0.0.2")
        zone.sign("d.test")
        route = resolver_for(dns_server(zone), dnssec=True).route("d.test")
        assert route.authentic
        assert [host.authentic for host in route.hosts] == [True]

    def test_without_dnssec_nothing_is_authentic(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """The same signed zone, asked without DNSSEC: no DO bit, so no AD
        bit, and the route claims nothing."""
        zone.add("d.test", "MX", "10 mx.d.test").add("mx.d.test", "A", "127.0.0.2")
        zone.sign("d.test")
        route = resolver_for(dns_server(zone)).route("d.test")
        assert not route.authentic
        assert not route.hosts[0].authentic

    def test_an_unsigned_domain_with_an_exchanger_in_a_signed_zone(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """The MX records are in an unsigned zone and the exchanger in a
        signed one (a hosting provider's): the route is not authentic, its
        exchanger is."""
        zone.add("d.test", "MX", "10 mx.p.test").add("mx.p.test", "A", "127.0.0.2")
        zone.sign("p.test")
        route = resolver_for(dns_server(zone), dnssec=True).route("d.test")
        assert not route.authentic
        assert route.hosts[0].authentic

    def test_an_unsigned_cname_leading_to_signed_mx_records_is_not_authentic(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """d.test is an alias, in an unsigned zone, of s.test, whose MX
        records are signed: the route is not authentic. Once d.test is
        signed too, it is."""
        zone.add("d.test", "CNAME", "s.test").add("s.test", "MX", "10 mx.s.test")
        zone.add("mx.s.test", "A", "127.0.0.2")
        zone.sign("s.test")
        server = dns_server(zone)
        assert not resolver_for(server, dnssec=True).route("d.test").authentic
        zone.sign("d.test")
        assert resolver_for(server, dnssec=True).route("d.test").authentic

    def test_an_exchanger_behind_an_unsigned_cname_is_not_authentic(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """The MX records are signed, and the exchanger is an alias of a host
        in an unsigned zone: the route is authentic, the exchanger is not."""
        zone.add("d.test", "MX", "10 mx.d.test").add("mx.d.test", "CNAME", "h.u.test")
        zone.add("h.u.test", "A", "127.0.0.2")
        zone.sign("d.test")
        route = resolver_for(dns_server(zone), dnssec=True).route("d.test")
        assert route.authentic
        assert not route.hosts[0].authentic

    def test_an_implicit_mx_is_authentic_when_the_denial_and_address_are(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """No MX records, and a signed zone: the answer that there are none
        and the domain's own address both came authenticated."""
        zone.add("d.test", "A", "127.0.0.2").sign("d.test")
        route = resolver_for(dns_server(zone), dnssec=True).route("d.test")
        assert route.implicit and route.authentic
        assert route.hosts[0].authentic

    def test_an_address_literal_is_never_authentic(
        self, dns_server: DnsServerFactory
    ) -> None:
        """An address literal asks no DNS, so nothing vouches for it."""
        route = resolver_for(dns_server(Zone()), dnssec=True).route("[127.0.0.2]")
        assert not route.authentic and not route.hosts[0].authentic


class TestCache:
    def test_answers_are_kept_for_their_ttl(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """Within the TTL no query is sent; after it the new data is seen."""
        zone.add("d.test", "MX", "10 a.t", ttl=300).add("a.t", "A", "127.0.0.2", ttl=60)
        server, clock = dns_server(zone), FakeClock()
        resolver = resolver_for(server, clock=clock)
        resolver.route("d.test")
        queries = len(server.queries)
        zone.set("a.t", "A", "127.0.0.3", ttl=60)
        clock.now += 59
        assert resolver.route("d.test").hosts[0].ipv4 == ("127.0.0.2",)
        assert len(server.queries) == queries
        clock.now += 2
        assert resolver.route("d.test").hosts[0].ipv4 == ("127.0.0.3",)
        assert ("d.test", "MX") not in server.queries[queries:]  # MX TTL is 300

    def test_negative_answers_are_kept_for_the_negative_ttl(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """NXDOMAIN is cached for the SOA's negative TTL (60 s here), then re-asked."""
        zone.add("other.test", "A", "127.0.0.2")
        server, clock = dns_server(zone), FakeClock()
        resolver = resolver_for(server, clock=clock)
        route_error(resolver, "d.test")
        zone.add("d.test", "A", "127.0.0.2")
        clock.now += 59
        route_error(resolver, "d.test")
        assert server.queries.count(("d.test", "MX")) == 1
        clock.now += 2
        assert resolver.route("d.test").implicit

    def test_transient_failures_are_not_cached(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """After a SERVFAIL the next lookup asks again and can succeed."""
        zone.add("d.test", "A", "127.0.0.2").servfail("d.test")
        resolver = resolver_for(dns_server(zone), clock=FakeClock())
        route_error(resolver, "d.test")
        zone.clear_behaviour("d.test")
        assert resolver.route("d.test").implicit

    def test_the_cache_is_bounded(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """The least recently used answer goes when the cache is full; 0 caches nothing."""
        for name in ("a.test", "b.test"):
            zone.add(name, "A", "127.0.0.2")
        server = dns_server(zone)
        resolver = resolver_for(server, cache_size=2, clock=FakeClock())
        resolver.route("a.test")  # caches a.test MX and a.test A (AAAA is NODATA)
        resolver.route("b.test")
        resolver.route("a.test")
        assert server.queries.count(("a.test", "MX")) == 2
        uncached = resolver_for(server, cache_size=0)
        uncached.route("b.test")
        uncached.route("b.test")
        assert server.queries.count(("b.test", "MX")) == 3

    def test_threads_share_one_resolver(
        self, zone: Zone, dns_server: DnsServerFactory
    ) -> None:
        """Eight threads resolving at once all get the same, complete answer."""
        for host in ("a", "b"):
            zone.add("d.test", "MX", f"10 {host}.d.test")
            zone.add(f"{host}.d.test", "A", "127.0.0.2")
        resolver = resolver_for(dns_server(zone), cache_size=4)
        results: list[set[str]] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(25):
                    results.append(set(names(resolver.route("d.test"))))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert results == [{"a.d.test", "b.d.test"}] * 200


class TestLiteralsAndConfiguration:
    @pytest.mark.parametrize(
        ("domain", "address"),
        [("[127.0.0.2]", "127.0.0.2"), ("[IPv6:::1]", "::1"), ("[ipv6:::1]", "::1")],
    )
    def test_address_literals_need_no_dns(
        self, dns_server: DnsServerFactory, domain: str, address: str
    ) -> None:
        """RFC 5321 §4.1.3: an address literal is the exchanger itself."""
        server = dns_server(Zone())
        [host] = resolver_for(server).route(domain).hosts
        assert address in host.ipv4 + host.ipv6
        assert server.queries == []

    def test_nameservers_port_and_timeouts_are_applied(self) -> None:
        """A resolver built from DirectConfig asks only the given servers."""
        resolver = build_resolver(
            DirectConfig(
                nameservers=("127.0.0.1",), dns_port=5353, dns_timeout=1, dns_lifetime=3
            )
        )
        assert resolver.nameservers == ["127.0.0.1"]
        assert (resolver.port, resolver.timeout, resolver.lifetime) == (5353, 1, 3)

    def test_a_given_resolver_is_used_as_it_is(
        self, dns_server: DnsServerFactory
    ) -> None:
        """DirectConfig(resolver=...) is not reconfigured."""
        given = dns_server(Zone()).resolver(lifetime=0.7)
        assert build_resolver(DirectConfig(resolver=given)) is given
        assert given.lifetime == 0.7

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"nameservers": "127.0.0.1"},
            {"nameservers": ()},
            {"nameservers": ("dns.example.org",)},
            {"max_addresses": 1},
            {"max_sessions": 0},
            {"mx_cache_size": -1},
            {"dns_lifetime": float("inf")},
            {"ca_file": "ca.pem"},
        ],
    )
    def test_bad_direct_settings_raise(self, kwargs: dict[str, object]) -> None:
        """Invalid DirectConfig values raise ConfigError when built."""
        with pytest.raises(ConfigError):
            DirectConfig(**kwargs)  # type: ignore[arg-type]
