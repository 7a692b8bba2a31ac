"""Direct delivery under DANE (RFC 7672), end to end on loopback.

``DirectConfig(dnssec=True)`` says the nameservers validate DNSSEC. The
loopback DNS server publishes TLSA records at ``_<port>._tcp.mx1.d.test``
and sets the AD bit for zones the test signs. The exchanger is an aiosmtpd
server whose certificate comes from an unrelated CA and names another host:
only DANE can authenticate it.
"""

from __future__ import annotations

import pytest
import trustme
from support.dane import deliver, ee_record, serving, ta_record, tlsa, tlsa_queries
from support.https import HttpsServerFactory, Reply
from support.mxnet import MxNet, message
from support.tls import client_context, server_context

from mailstrom_py import DeliveryResult

D, DF = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED


@pytest.fixture
def net(net: MxNet) -> MxNet:
    net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
    return net


class TestDane:
    def test_a_dane_ee_match_delivers_with_verified_tls(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """Authenticated 3 1 1 record of the server's key: delivered, the
        session verified and recorded as held to DANE for mx1.d.test, the
        TLSA base domain (RFC 8460 §3), although the certificate names
        another host (names are not checked, §3.1.1)."""
        tlsa(net, ee_record(leaf))
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert r.remote.tls_policy == "tlsa"
        assert r.remote.tls_policy_domain == "mx1.d.test"
        assert r.remote.tls_result == "success"
        assert server.handler.messages[0].tls

    def test_a_dane_ta_match_delivers(self, net: MxNet, own_ca: trustme.CA) -> None:
        """Authenticated 2 0 0 record holding the issuing CA, and a leaf for
        mx1.d.test: delivered with verified TLS (RFC 7672 §3.1.2)."""
        tlsa(net, ta_record(own_ca))
        net.smtp("127.0.0.2", starttls_context=serving(own_ca.issue_cert("mx1.d.test")))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified

    def test_a_dane_ta_leaf_for_another_name_defers(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """DANE-TA checks the leaf's name: a leaf for another host defers."""
        tlsa(net, ta_record(own_ca))
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert "MAIL" not in server.handler.commands

    def test_unusable_records_require_tls_and_are_the_policy_strings(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """Authenticated records of PKIX usages only (0 and 1, unusable in
        SMTP, RFC 7672 §3.1.3): delivered over TLS, required but not
        authenticated, the session held to DANE, and every record found
        kept as the policy's strings for its TLS report, as Postfix lists
        every TLSA record it got."""
        pkix_ee = "1" + ee_record(leaf)[1:]
        pkix_ta = "0 0 1 " + "cd" * 32
        tlsa(net, pkix_ee, pkix_ta)
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and not r.remote.tls_verified
        assert (r.remote.tls_policy, r.remote.tls_policy_domain) == (
            "tlsa",
            "mx1.d.test",
        )
        assert sorted(r.remote.tls_policy_strings) == sorted([pkix_ee, pkix_ta])
        assert server.handler.messages[0].tls

    def test_every_record_found_is_a_policy_string(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """A matching DANE-EE record beside a PKIX-EE one: verified by the
        first, and both are the session's policy strings."""
        pkix_ee = "1" + ee_record(leaf)[1:]
        tlsa(net, ee_record(leaf), pkix_ee)
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert sorted(r.remote.tls_policy_strings) == sorted([ee_record(leaf), pkix_ee])

    def test_a_mismatch_defers_without_plaintext(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """Authenticated records naming another key: deferred with 4.7.5 after
        one connection, no MAIL, recorded as a DANE validation failure."""
        tlsa(net, ee_record(own_ca.issue_cert("mx1.d.test")))
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert r.remote is not None
        assert (r.remote.tls_policy, r.remote.tls_result) == (
            "tlsa",
            "validation-failure",
        )
        assert "DANE" in (r.detail or "")
        assert "MAIL" not in server.handler.commands
        assert server.handler.connections == 1

    def test_no_starttls_under_dane_defers(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """Usable records, and the exchanger offers no STARTTLS: deferred."""
        tlsa(net, ee_record(leaf))
        server = net.smtp("127.0.0.2")
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.4")
        assert "MAIL" not in server.handler.commands

    def test_records_without_the_ad_bit_are_ignored(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """A mismatching record from an unsigned zone (no AD bit): ignored,
        delivered over opportunistic TLS, unverified, no policy found."""
        tlsa(net, ee_record(own_ca.issue_cert("mx1.d.test")), signed=False)
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and not r.remote.tls_verified
        assert r.remote.tls_policy == "no-policy-found"

    def test_without_dnssec_the_records_are_not_asked_for(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """Without ``dnssec=True`` no TLSA query is made and DANE never applies."""
        tlsa(net, ee_record(own_ca.issue_cert("mx1.d.test")))
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(), message("a@d.test"))
        assert r.result is D
        assert not any(kind == "TLSA" for _, kind in net.dns.queries)

    def test_a_failed_tlsa_lookup_keeps_the_exchanger_out(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """SERVFAIL for the TLSA query of a host whose address is signed: the
        exchanger is not contacted and the recipient is deferred (4.4.3)."""
        net.zone.sign("d.test").servfail(f"_{net.port}._tcp.mx1.d.test", "TLSA")
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.4.3")
        assert server.handler.connections == 0

    def test_a_failed_tlsa_lookup_in_an_unsigned_zone_is_no_dane(
        self, net: MxNet, leaf: trustme.LeafCert
    ) -> None:
        """SERVFAIL for the TLSA query of a host whose address is not signed
        (RFC 7672 §2.2): DANE does not apply, the records are not even asked
        for, and the mail goes over opportunistic TLS."""
        net.zone.servfail(f"_{net.port}._tcp.mx1.d.test", "TLSA")
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = deliver(net.mailer(dnssec=True), message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_policy == "no-policy-found"
        assert len(server.handler.messages) == 1
        assert not tlsa_queries(net)

    def test_tls_required_no_delivers_regardless(
        self, net: MxNet, own_ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """A DANE mismatch, and a message saying ``TLS-Required: No``: delivered."""
        tlsa(net, ee_record(own_ca.issue_cert("mx1.d.test")))
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        raw = message("a@d.test").replace(
            b"\r\n\r\n", b"\r\nTLS-Required: No\r\n\r\n", 1
        )
        r = deliver(net.mailer(dnssec=True), raw)
        assert r.result is D
        assert len(server.handler.messages) == 1


class TestDaneBeforeMtaSts:
    def test_dane_takes_precedence_over_an_enforce_policy(
        self,
        net: MxNet,
        https_server: HttpsServerFactory,
        ca: trustme.CA,
        leaf: trustme.LeafCert,
    ) -> None:
        """d.test publishes MTA-STS enforce naming only mx9.d.test, and its MX
        mx1.d.test has a matching DANE-EE record and a certificate no CA
        vouches for: DANE decides (RFC 8461 §2), and the mail is delivered."""
        net.zone.add("mta-sts.d.test", "A", "127.0.0.9")
        net.zone.set("_mta-sts.d.test", "TXT", "v=STSv1; id=1")
        https = https_server(
            server_context(ca, "mta-sts.d.test"), host="127.0.0.9", port=443
        )
        https.replies["/.well-known/mta-sts.txt"] = Reply(
            body=b"version: STSv1\nmode: enforce\nmx: mx9.d.test\nmax_age: 86400\n"
        )
        tlsa(net, ee_record(leaf))
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        mailer = net.mailer(dnssec=True, mta_sts_context=client_context(ca))
        r = deliver(mailer, message("a@d.test"))
        assert r.result is D
        assert r.remote is not None and r.remote.tls_policy == "tlsa"
        assert len(https.requests) == 1

    def test_under_insecure_mx_records_dane_does_not_outrank_the_policy(
        self,
        net: MxNet,
        https_server: HttpsServerFactory,
        ca: trustme.CA,
        leaf: trustme.LeafCert,
    ) -> None:
        """As above, but d.test's MX records are unsigned (mx1.d.test's own
        records are signed): whoever forged them could name a host of theirs
        with TLSA records, so DANE does not apply. The policy holds, mx1.d.test
        is never contacted, and the recipient is deferred (4.7.0)."""
        net.zone.add("mta-sts.d.test", "A", "127.0.0.9")
        net.zone.set("_mta-sts.d.test", "TXT", "v=STSv1; id=1")
        https = https_server(
            server_context(ca, "mta-sts.d.test"), host="127.0.0.9", port=443
        )
        https.replies["/.well-known/mta-sts.txt"] = Reply(
            body=b"version: STSv1\nmode: enforce\nmx: mx9.d.test\nmax_age: 86400\n"
        )
        tlsa(net, ee_record(leaf), signed=False)
        net.zone.sign("mx1.d.test")
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        mailer = net.mailer(dnssec=True, mta_sts_context=client_context(ca))
        r = deliver(mailer, message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.0")
        assert server.handler.connections == 0
