"""Direct delivery under DANE (RFC 7672): when it applies, and when its
lookups are made.

DANE applies only to the exchangers of DNSSEC-authenticated MX records whose
own address records are authenticated too (RFC 7672 §2.2.1, §2.2.2). The
TLSA records of the first exchanger to be tried are looked up before one of
the destination's connections is taken. The loopback DNS server sets the AD
bit for the zones a test signs, and can answer late; the exchanger's
certificate comes from an unrelated CA and names another host, so only DANE
can authenticate it.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import trustme
from support.dane import deliver, ee_record, serving, tlsa, tlsa_queries
from support.mxnet import NOW, MxNet, message

from mailstrom_py import DeliveryResult, Mailstrom
from mailstrom_py.config import DestinationLimits, ShapingConfig

D, DF = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED


@pytest.fixture
def net(net: MxNet) -> MxNet:
    net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
    return net


class TestDnssecStatusOfTheRoute:
    """DANE applies only to the exchangers of authenticated MX records (or
    CNAMEs leading to them) whose own address records are authenticated too
    (RFC 7672 §2.2.1, §2.2.2); elsewhere the TLSA records are not looked up
    and mail goes as it would without DANE (Postfix's ``dane`` level does the
    same). Each test publishes authenticated records that would defer the
    mail if they were used."""

    def test_an_insecure_mx_rrset_leaves_its_hosts_records_unused(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """d.test's MX records are unsigned; mx1.d.test, its address and its
        TLSA records (naming another key) are signed: delivered over
        opportunistic TLS, no TLSA query made."""
        tlsa(net, ee_record(own_ca.issue_cert("mx1.d.test")), signed=False)
        net.zone.sign("mx1.d.test")
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_policy == "no-policy-found"
        assert len(server.handler.messages) == 1
        assert not tlsa_queries(net)

    def test_an_insecure_cname_leading_to_the_mx_rrset(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """c.test, unsigned, is an alias of d.test, whose MX, address and TLSA
        records (naming another key) are signed. Mail to d.test is deferred
        by DANE; mail to c.test goes over opportunistic TLS."""
        net.zone.add("c.test", "CNAME", "d.test")
        tlsa(net, ee_record(own_ca.issue_cert("mx1.d.test")))
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        mailer = net.mailer(dnssec=True)
        r = deliver(mailer, message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        r = deliver(mailer, message("a@c.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_policy == "no-policy-found"
        assert len(server.handler.messages) == 1

    def test_a_host_with_insecure_addresses_has_its_records_unused(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """h.test's MX records are signed and name mx1.u.test, whose address
        is unsigned although its TLSA records (naming another key) are
        signed: delivered over opportunistic TLS, no TLSA query made."""
        net.mx("h.test", (10, "mx1.u.test", "127.0.0.2"))
        owner = f"_{net.port}._tcp.mx1.u.test"
        net.zone.add(owner, "TLSA", ee_record(own_ca.issue_cert("mx1.u.test")))
        net.zone.sign("h.test").sign(owner)
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@h.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_policy == "no-policy-found"
        assert len(server.handler.messages) == 1
        assert not tlsa_queries(net)

    def test_an_implicit_mx_uses_the_domains_own_records(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """i.test has no MX records and a signed address and TLSA records of
        its own (RFC 7672 §2.2.2): delivered under DANE."""
        net.zone.add("i.test", "A", "127.0.0.2")
        net.zone.add(f"_{net.port}._tcp.i.test", "TLSA", ee_record(leaf))
        net.zone.sign("i.test")
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@i.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert (r.remote.tls_policy, r.remote.tls_policy_domain) == ("tlsa", "i.test")


class TestLookupsBeforeTheConnection:
    """The TLSA records of the first exchanger to be tried are looked up
    before one of the destination's connections is taken; a later
    exchanger's only when it is tried."""

    def test_a_slow_tlsa_answer_holds_none_of_the_destinations_connections(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """d.test's TLSA records come 3 s late. e.test, whose MX records are
        unsigned (DANE does not apply to it), has the same exchanger, and that
        destination may have one connection at a time. e.test's mail is
        delivered while d.test's answer is still coming; d.test's mail goes
        out under DANE once it has come."""
        tlsa(net, ee_record(leaf))
        net.zone.delay(f"_{net.port}._tcp.mx1.d.test", 3.0, "TLSA")
        net.zone.add("e.test", "MX", "10 mx1.d.test")
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        one = ShapingConfig(default=DestinationLimits(connections=1), presets=False)
        resolver = net.dns.resolver(timeout=5.0, lifetime=6.0)
        config = net.config(dnssec=True, resolver=resolver, delivery_threads=2)
        with Mailstrom(
            dataclasses.replace(config, shaping=one), clock=lambda: NOW
        ) as m:
            slow = m.send_email(message("a@d.test"))
            deadline = time.monotonic() + 10
            while not tlsa_queries(net) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert tlsa_queries(net)
            began = time.monotonic()
            fast = m.wait(m.send_email(message("b@e.test")), timeout=10)
            waited = time.monotonic() - began
            assert fast.succeeded
            assert waited < 1.5, f"e.test waited {waited:.1f} s for d.test's TLSA"
            assert not m.query_status(slow).completed
            [r] = m.wait(slow, timeout=10).recipients
            assert r.result is D
            assert r.remote is not None and r.remote.tls_policy == "tlsa"

    def test_a_later_exchangers_records_are_not_waited_for(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """mx2.d.test, the less preferred exchanger, answers for its TLSA
        records only after 3 s: mail that mx1.d.test takes goes out at once,
        and mx2.d.test's records are never asked for."""
        net.mx("d.test", (20, "mx2.d.test", "127.0.0.3"))
        tlsa(net, ee_record(leaf))
        net.zone.delay(f"_{net.port}._tcp.mx2.d.test", 3.0, "TLSA")
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        resolver = net.dns.resolver(timeout=5.0, lifetime=6.0)
        mailer = net.mailer(dnssec=True, resolver=resolver)
        began = time.monotonic()
        r = deliver(mailer, message("a@d.test"))
        took = time.monotonic() - began
        assert r.result is D
        assert r.remote is not None and r.remote.host == "mx1.d.test"
        assert took < 1.5, f"the delivery took {took:.1f} s"
        assert tlsa_queries(net) == [f"_{net.port}._tcp.mx1.d.test"]

    def test_a_later_exchangers_records_are_looked_up_when_it_is_tried(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """mx1.d.test refuses connections: mx2.d.test's records are looked up
        then, and hold it to DANE (a mismatch defers with 4.7.5)."""
        net.mx("d.test", (20, "mx2.d.test", "127.0.0.3"))
        net.zone.add(
            f"_{net.port}._tcp.mx2.d.test",
            "TLSA",
            ee_record(own_ca.issue_cert("mx2.d.test")),
        )
        net.zone.sign("d.test")
        net.refusing("127.0.0.2")
        server = net.smtp("127.0.0.3", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert "MAIL" not in server.handler.commands
        assert tlsa_queries(net) == [
            f"_{net.port}._tcp.mx1.d.test",
            f"_{net.port}._tcp.mx2.d.test",
        ]
