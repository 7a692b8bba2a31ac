"""Direct delivery under DANE to an exchanger whose MX host name is an alias
(RFC 7672 §2.2.2, §3.2.2), end to end on loopback.

d.test's MX names mx1.d.test, a CNAME for mail.host.test, which holds the
address. When the chain and the address records come DNSSEC-authenticated,
the TLSA records are looked up at the fully expanded name first
(``_<port>._tcp.mail.host.test``, the TLSA base domain when it has records)
and at the initial name only if the expanded name has none. A DANE-TA(2)
leaf may name the TLSA base domain, the MX host name as written, or the
recipient domain. The exchanger's certificate comes from a CA nobody trusts,
so only DANE can authenticate it.
"""

from __future__ import annotations

import ssl

import pytest
import trustme
from support.dane import deliver, ee_record, serving, ta_record, tlsa_queries
from support.mxnet import MxNet, message

from mailstrom_py import DeliveryResult

D, DF = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED

INITIAL, EXPANDED = "mx1.d.test", "mail.host.test"


@pytest.fixture
def net(net: MxNet) -> MxNet:
    net.zone.add("d.test", "MX", f"10 {INITIAL}")
    net.zone.add(INITIAL, "CNAME", EXPANDED)
    net.zone.add(EXPANDED, "A", "127.0.0.2")
    net.zone.sign("d.test").sign("host.test")
    return net


def tlsa(net: MxNet, base: str, *records: str) -> str:
    """Publish ``records`` as the TLSA records of ``base``; their owner name."""
    owner = f"_{net.port}._tcp.{base}"
    for record in records:
        net.zone.add(owner, "TLSA", record)
    return owner


def recording_sni(cert: trustme.LeafCert, names: list[str | None]) -> ssl.SSLContext:
    """A server context presenting ``cert`` that appends to ``names`` the
    server name each client sends in SNI (None for none)."""
    context = serving(cert)

    def record(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record
    return context


class TestTlsaBaseDomain:
    def test_the_expanded_names_records_are_used_first(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """Matching records at the expanded name and mismatching ones at the
        initial name: delivered with verified TLS after a single TLSA query,
        at the expanded name; the initial name's records are never asked
        for."""
        expanded = tlsa(net, EXPANDED, ee_record(leaf))
        tlsa(net, INITIAL, ee_record(own_ca.issue_cert(INITIAL)))
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert r.remote.tls_policy == "tlsa"
        assert tlsa_queries(net) == [expanded]

    def test_the_initial_name_is_tried_when_the_expanded_name_has_none(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """No TLSA records at the expanded name (an authenticated NXDOMAIN),
        matching ones at the initial name: asked in that order, delivered
        with verified TLS."""
        initial = tlsa(net, INITIAL, ee_record(leaf))
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert tlsa_queries(net) == [f"_{net.port}._tcp.{EXPANDED}", initial]

    def test_a_mismatch_at_the_expanded_name_is_not_rescued_by_the_initial_name(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """Mismatching records at the expanded name, matching ones at the
        initial name: the expanded name's records hold, and the recipient
        is deferred with 4.7.5 before MAIL."""
        tlsa(net, EXPANDED, ee_record(own_ca.issue_cert(EXPANDED)))
        tlsa(net, INITIAL, ee_record(leaf))
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert "MAIL" not in server.handler.commands

    def test_a_failed_lookup_at_the_expanded_name_keeps_the_exchanger_out(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """SERVFAIL for the expanded name's TLSA records: what they say is
        unknown, so the initial name's (matching) records are not asked for,
        the exchanger is not contacted, and the recipient is deferred
        (4.4.3, RFC 7672 §2.2)."""
        expanded = f"_{net.port}._tcp.{EXPANDED}"
        net.zone.servfail(expanded, "TLSA")
        tlsa(net, INITIAL, ee_record(leaf))
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.4.3")
        assert server.handler.connections == 0
        assert set(tlsa_queries(net)) == {expanded}

    def test_an_unsigned_cname_target_means_no_dane(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """The alias is signed but host.test, holding the address, is not:
        the address records are not authenticated, so no TLSA records are
        asked for, at either name, and the mail goes over opportunistic TLS
        although the initial name has mismatching records."""
        net.zone.unsign("host.test")
        tlsa(net, INITIAL, ee_record(own_ca.issue_cert(INITIAL)))
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_policy == "no-policy-found"
        assert tlsa_queries(net) == []


class TestReferenceIdentifiers:
    """A leaf under a DANE-TA(2) record must name one of the reference
    identifiers of RFC 7672 §3.2.2."""

    @pytest.mark.parametrize(
        "name",
        [EXPANDED, INITIAL, "d.test", f"*.{EXPANDED.partition('.')[2]}"],
        ids=["tlsa-base-domain", "initial-mx-name", "next-hop-domain", "wildcard"],
    )
    def test_a_leaf_naming_a_reference_identifier_delivers(
        self, net: MxNet, own_ca: trustme.CA, name: str
    ) -> None:
        """Records at the expanded name; a leaf for the TLSA base domain,
        the MX host name as written, the recipient domain, or a wildcard
        covering the base domain: delivered with verified TLS."""
        tlsa(net, EXPANDED, ta_record(own_ca))
        net.smtp("127.0.0.2", starttls_context=serving(own_ca.issue_cert(name)))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified

    def test_a_leaf_naming_none_of_them_defers(
        self, net: MxNet, own_ca: trustme.CA
    ) -> None:
        """A leaf for another host, from the anchor the record names:
        deferred with 4.7.5, and the detail gives the names looked for."""
        tlsa(net, EXPANDED, ta_record(own_ca))
        server = net.smtp(
            "127.0.0.2", starttls_context=serving(own_ca.issue_cert("other.test"))
        )
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert f"not {EXPANDED}, {INITIAL}, d.test" in (r.detail or "")
        assert "MAIL" not in server.handler.commands

    @pytest.mark.parametrize(
        ("name", "result"),
        [("d.test", D), ("other.test", DF)],
        ids=["expanded-next-hop-domain", "none-of-them"],
    )
    def test_an_aliased_recipient_domain_adds_its_expanded_name(
        self, net: MxNet, own_ca: trustme.CA, name: str, result: DeliveryResult
    ) -> None:
        """The recipient domain alias.test is a CNAME for d.test, signed, so
        the MX lookup reaches d.test's MX through a secure chain: d.test,
        the expanded next-hop domain, becomes a reference identifier too
        (RFC 7672 §3.2.2), known from that lookup without another. A leaf
        for d.test delivers to a@alias.test; a leaf for another name defers,
        and the detail lists the four names in order."""
        net.zone.add("alias.test", "CNAME", "d.test")
        net.zone.sign("alias.test")
        tlsa(net, EXPANDED, ta_record(own_ca))
        net.smtp("127.0.0.2", starttls_context=serving(own_ca.issue_cert(name)))
        r = deliver(net.mailer(dnssec=True), message("a@alias.test"))
        assert r.result is result
        if result is D:
            assert r.remote is not None and r.remote.tls_verified
        else:
            names = f"not {EXPANDED}, {INITIAL}, alias.test, d.test"
            assert names in (r.detail or "")

    def test_an_alias_under_an_unsigned_chain_adds_no_name(
        self, net: MxNet, own_ca: trustme.CA
    ) -> None:
        """alias.test's CNAME is not signed, so the MX answer is not
        authenticated and DANE does not apply at all: the leaf for d.test
        is not even checked against TLSA records (opportunistic TLS)."""
        net.zone.add("alias.test", "CNAME", "d.test")
        tlsa(net, EXPANDED, ta_record(own_ca))
        net.smtp("127.0.0.2", starttls_context=serving(own_ca.issue_cert("d.test")))
        r = deliver(net.mailer(dnssec=True), message("a@alias.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_policy == "no-policy-found"
        assert tlsa_queries(net) == []

    def test_without_an_alias_the_names_are_the_mx_name_and_the_domain(
        self, net: MxNet, own_ca: trustme.CA
    ) -> None:
        """mx2.d.test, no alias, with records of its own: a leaf for d.test
        delivers, the TLSA base domain being the MX host name."""
        net.zone.set("d.test", "MX", "10 mx2.d.test")
        net.zone.add("mx2.d.test", "A", "127.0.0.2")
        tlsa(net, "mx2.d.test", ta_record(own_ca))
        net.smtp("127.0.0.2", starttls_context=serving(own_ca.issue_cert("d.test")))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified


class TestServerName:
    """The name sent in SNI: under DANE the TLSA base domain (RFC 7672
    §8.1), else the MX host name, as always."""

    def test_a_dane_session_sends_the_expanded_name(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """Records at the expanded name: the handshake names mail.host.test,
        not mx1.d.test, and the mail is delivered with verified TLS."""
        tlsa(net, EXPANDED, ee_record(leaf))
        names: list[str | None] = []
        net.smtp("127.0.0.2", starttls_context=recording_sni(leaf, names))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert names == [EXPANDED]

    def test_records_at_the_initial_name_make_it_the_name_sent(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """No records at the expanded name, matching ones at the initial
        name: the initial name is the TLSA base domain, and is sent."""
        tlsa(net, INITIAL, ee_record(leaf))
        names: list[str | None] = []
        net.smtp("127.0.0.2", starttls_context=recording_sni(leaf, names))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert names == [INITIAL]

    def test_a_session_without_dane_sends_the_mx_host_name(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """The CNAME target unsigned, so no DANE: opportunistic TLS, and the
        name sent is the MX host name as the MX record gives it."""
        net.zone.unsign("host.test")
        tlsa(net, EXPANDED, ee_record(own_ca.issue_cert(EXPANDED)))
        names: list[str | None] = []
        net.smtp("127.0.0.2", starttls_context=recording_sni(leaf, names))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_policy == "no-policy-found"
        assert names == [INITIAL]
