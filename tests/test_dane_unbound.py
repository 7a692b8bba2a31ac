"""DANE through a real validating resolver (RFC 7672 with RFC 4035).

The zone d.test is signed with dnspython and served by the loopback DNS
server; Unbound, on a loopback port, validates it with the zone's key as
trust anchor, so the AD bit mailstrom_py believes with
``DirectConfig(dnssec=True)`` is genuine: set only for answers whose
signatures verify. The exchanger is an aiosmtpd server whose certificate
comes from a CA nobody trusts and names another host: only DANE can
authenticate it.

These tests need the ``unbound`` program (Debian's ``unbound`` package,
which CI installs); without it they are skipped, unless
``MAILSTROM_REQUIRE_UNBOUND=1`` makes that a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from support.dane import ee_record, serving
from support.dnsd import DnsServerFactory
from support.dnssec import UNBOUND, SignedZone, Unbound
from support.mxnet import MxNet, message

from mailstrom_py import DeliveryResult
from mailstrom_py.status import RecipientStatus

D, DF = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED


@pytest.fixture(scope="module")
def leaf() -> trustme.LeafCert:
    """A certificate for another name, from a CA nobody trusts."""
    return trustme.CA(organization_name="DANE-only CA").issue_cert("elsewhere.test")


@pytest.fixture
def unbound_program() -> str:
    if UNBOUND is not None:
        return UNBOUND
    reason = "unbound is not installed (Debian's unbound package)"
    if os.environ.get("MAILSTROM_REQUIRE_UNBOUND") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class ValidatedNet:
    """d.test signed and served on loopback, validated by Unbound; its MX
    mx1.d.test at 127.0.0.2 on ``net``'s port, with TLSA ``record`` (or the
    zone's ``records`` instead, if given). Names
    outside d.test come from ``net``'s zone, unsigned: Unbound, with no
    trust anchor above them, finds them insecure."""

    def __init__(
        self,
        net: MxNet,
        dns_server: DnsServerFactory,
        directory: Path,
        record: str,
        *,
        records: list[str] | None = None,
    ) -> None:
        self.net = net
        self.tlsa_owner = f"_{net.port}._tcp.mx1"
        self.zone = SignedZone(
            "d.test",
            records
            or [
                "@ 300 IN MX 10 mx1",
                "mx1 300 IN A 127.0.0.2",
                f"{self.tlsa_owner} 300 IN TLSA {record}",
            ],
            others=net.zone,
        )
        self.server = dns_server(responder=self.zone.respond)
        self.unbound = Unbound(directory, self.zone, self.server.port)

    def deliver(self, to: str) -> RecipientStatus:
        mailer = self.net.mailer(dnssec=True, resolver=self.unbound.resolver())
        message_id = mailer.send_email(message(to))
        mailer.run_once()
        [status] = mailer.query_status(message_id).recipients
        return status


@pytest.fixture
def validated(
    net: MxNet,
    dns_server: DnsServerFactory,
    tmp_path: Path,
    leaf: trustme.LeafCert,
    unbound_program: str,
) -> Iterator[ValidatedNet]:
    """A validated d.test whose TLSA record matches ``leaf``."""
    setup = ValidatedNet(net, dns_server, tmp_path, ee_record(leaf))
    with setup.unbound:
        yield setup


class TestDaneThroughUnbound:
    def test_a_matching_dane_ee_record_delivers_with_verified_tls(
        self, validated: ValidatedNet, leaf: trustme.LeafCert
    ) -> None:
        """Unbound vouches for the MX, address and TLSA records, and the
        record matches the server's key: delivered, the session verified
        and held to DANE, although no CA vouches for the certificate."""
        server = validated.net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = validated.deliver("a@d.test")
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert (r.remote.tls_policy, r.remote.tls_result) == ("tlsa", "success")
        assert server.handler.messages[0].tls

    def test_a_mismatching_record_is_refused(
        self,
        net: MxNet,
        dns_server: DnsServerFactory,
        tmp_path: Path,
        leaf: trustme.LeafCert,
        unbound_program: str,
    ) -> None:
        """The validated record names another key: deferred with 4.7.5
        after the handshake, nothing sent, recorded as a validation
        failure."""
        other = trustme.CA().issue_cert("mx1.d.test")
        setup = ValidatedNet(net, dns_server, tmp_path, ee_record(other))
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        with setup.unbound:
            r = setup.deliver("a@d.test")
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert r.remote is not None
        assert (r.remote.tls_policy, r.remote.tls_result) == (
            "tlsa",
            "validation-failure",
        )
        assert "MAIL" not in server.handler.commands

    def test_a_forged_record_keeps_the_exchanger_out(
        self, validated: ValidatedNet, leaf: trustme.LeafCert
    ) -> None:
        """The TLSA record is swapped on the way for one naming another key,
        its signature left as it was: Unbound finds it bogus and answers
        SERVFAIL, so the exchanger, whose address is secure, is not
        contacted and the recipient is deferred (4.4.3, RFC 7672 §2.2)."""
        other = trustme.CA().issue_cert("mx1.d.test")
        validated.zone.forge(validated.tlsa_owner, "TLSA", ee_record(other))
        server = validated.net.smtp("127.0.0.2", starttls_context=serving(leaf))
        r = validated.deliver("a@d.test")
        assert (r.result, r.status_code) == (DF, "4.4.3")
        assert "TLSA" in (r.detail or "")
        assert server.handler.connections == 0

    def test_an_insecure_mx_rrset_leaves_the_records_unused(
        self,
        net: MxNet,
        dns_server: DnsServerFactory,
        tmp_path: Path,
        leaf: trustme.LeafCert,
        unbound_program: str,
    ) -> None:
        """e.test, in an unsigned zone, names mx1.d.test as its MX, whose
        validated record names another key. Unbound answers e.test's MX
        records without the AD bit, so DANE does not apply (RFC 7672
        §2.2.1): delivered over opportunistic TLS, no TLSA query made. Mail
        to d.test itself is refused."""
        other = trustme.CA().issue_cert("mx1.d.test")
        setup = ValidatedNet(net, dns_server, tmp_path, ee_record(other))
        net.zone.add("e.test", "MX", "10 mx1.d.test")
        server = net.smtp("127.0.0.2", starttls_context=serving(leaf))
        with setup.unbound:
            r = setup.deliver("a@e.test")
            assert r.result is D
            assert r.remote is not None
            assert r.remote.tls_policy == "no-policy-found"
            assert not [q for q in setup.server.queries if q[1] == "TLSA"]
            r = setup.deliver("a@d.test")
            assert (r.result, r.status_code) == (DF, "4.7.5")
        assert len(server.handler.messages) == 1

    def test_an_aliased_exchanger_is_held_to_its_expanded_names_records(
        self,
        net: MxNet,
        dns_server: DnsServerFactory,
        tmp_path: Path,
        leaf: trustme.LeafCert,
        unbound_program: str,
    ) -> None:
        """mx1.d.test is a CNAME for mail.d.test, which has the address and
        a record matching the server's key; mx1.d.test's own record names
        another key. Unbound vouches for the chain, so the expanded name's
        records are looked up first and used (RFC 7672 §2.2.2): delivered
        with verified TLS, the initial name's records never asked for."""
        other = trustme.CA().issue_cert("mx1.d.test")
        port = net.port
        records = [
            "@ 300 IN MX 10 mx1",
            "mx1 300 IN CNAME mail",
            "mail 300 IN A 127.0.0.2",
            f"_{port}._tcp.mail 300 IN TLSA {ee_record(leaf)}",
            f"_{port}._tcp.mx1 300 IN TLSA {ee_record(other)}",
        ]
        setup = ValidatedNet(net, dns_server, tmp_path, "", records=records)
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        with setup.unbound:
            r = setup.deliver("a@d.test")
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert r.remote.tls_policy == "tlsa"
        tlsa = [name for name, kind in setup.server.queries if kind == "TLSA"]
        assert tlsa == [f"_{port}._tcp.mail.d.test"]
