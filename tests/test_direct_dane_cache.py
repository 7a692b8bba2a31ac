"""TLSA answers kept for their TTL across messages (RFC 7672 §2.2.3), end to
end on loopback.

A mailer keeps each TLSA answer it gets, records and authenticated denials
alike, for the answer's TTL (a denial's: the SOA's negative TTL, 60 seconds
on the loopback DNS server), so the next message to the same exchanger asks
nothing; a lookup that failed is never kept, as a failure is no denial. The
loopback DNS server counts the questions it is asked.
"""

from __future__ import annotations

import time

import pytest
import trustme
from support.dane import deliver, ee_record, serving, tlsa_queries
from support.mxnet import MxNet, message

from mailstrom_py import DeliveryResult

D, DF = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED


@pytest.fixture
def net(net: MxNet) -> MxNet:
    net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
    net.zone.sign("d.test")
    return net


def owner(net: MxNet) -> str:
    return f"_{net.port}._tcp.mx1.d.test"


class TestTlsaCache:
    def test_a_second_message_asks_nothing_while_the_ttl_lasts(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """Two messages to d.test, its exchanger's records (TTL 300) matching:
        both delivered under DANE, one TLSA query in all."""
        net.zone.add(owner(net), "TLSA", ee_record(leaf))
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        mailer = net.mailer(dnssec=True)
        for to in ("a@d.test", "b@d.test"):
            r = deliver(mailer, message(to))
            assert r.result is D
            assert r.remote is not None and r.remote.tls_verified
        assert tlsa_queries(net) == [owner(net)]

    def test_the_records_are_asked_again_once_their_ttl_ends(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """Records with a TTL of one second: a message after that asks again."""
        net.zone.add(owner(net), "TLSA", ee_record(leaf), ttl=1)
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        mailer = net.mailer(dnssec=True)
        assert deliver(mailer, message("a@d.test")).result is D
        assert len(tlsa_queries(net)) == 1
        time.sleep(1.2)
        r = deliver(mailer, message("b@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert tlsa_queries(net) == [owner(net)] * 2

    @pytest.mark.parametrize("denial", ["nxdomain", "nodata"])
    def test_an_authenticated_denial_is_kept(
        self, net: MxNet, leaf: trustme.LeafCert, denial: str
    ) -> None:
        """No TLSA records, said with the AD bit (no such name, or a name
        with other records only): no DANE for either message, one query."""
        if denial == "nodata":
            net.zone.add(owner(net), "TXT", "not a TLSA record")
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        mailer = net.mailer(dnssec=True)
        for to in ("a@d.test", "b@d.test"):
            r = deliver(mailer, message(to))
            assert r.result is D
            assert r.remote is not None and r.remote.tls_policy == "no-policy-found"
        assert tlsa_queries(net) == [owner(net)]

    def test_a_failed_lookup_is_not_kept_as_a_denial(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """SERVFAIL for the first message (deferred, 4.4.3); once the server
        answers again, the next message asks again and finds the records."""
        net.zone.add(owner(net), "TLSA", ee_record(leaf))
        net.zone.servfail(owner(net), "TLSA")
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        mailer = net.mailer(dnssec=True)
        r = deliver(mailer, message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.4.3")
        asked = len(tlsa_queries(net))
        assert asked >= 1
        net.zone.clear_behaviour(owner(net), "TLSA")
        r = deliver(mailer, message("b@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert len(tlsa_queries(net)) == asked + 1
        assert len(server.handler.messages) == 1
