"""DANE for SMTP: TLSA lookups with DNSSEC (RFC 7672 §2.2) and chain matching (§3).

Lookups run against the loopback DNS server, whose zones can be declared
signed so its answers carry the AD bit. Matching uses certificates from the
trustme test CA; the expected TLSA data is computed from each certificate's
private key (for the public key) or PEM (for the certificate), not by the
code under test. One test takes the chain from a real TLS handshake.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from support.dnsd import DnsServer, DnsServerFactory, Zone
from support.https import HttpsServerFactory

from mailstrom_py.delivery.routing.dane import (
    TlsaLookup,
    TlsaRecord,
    association_data,
    lookup_tlsa,
    peer_chain,
    tlsa_name,
    verify_chain,
)

MX = "mx.d.test"
TLSA_OWNER = "_25._tcp.mx.d.test"


def der(pem: trustme.Blob) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.bytes().decode("ascii"))


def spki(cert: trustme.LeafCert) -> bytes:
    """The SubjectPublicKeyInfo of ``cert``, from its private key."""
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def digest(data: bytes, matching_type: int) -> bytes:
    if matching_type == 0:
        return data
    algorithm = hashlib.sha256 if matching_type == 1 else hashlib.sha512
    return algorithm(data).digest()


def record_for(
    cert: trustme.LeafCert, usage: int, selector: int, matching_type: int
) -> TlsaRecord:
    """The TLSA record of ``cert``'s leaf, computed independently."""
    data = der(cert.cert_chain_pems[0]) if selector == 0 else spki(cert)
    return TlsaRecord(usage, selector, matching_type, digest(data, matching_type))


def ca_record(ca: trustme.CA, selector: int, matching_type: int) -> TlsaRecord:
    """A DANE-TA record of ``ca``'s own certificate."""
    cert = der(ca.cert_pem)
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    data = (
        cert
        if selector == 0
        else key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return TlsaRecord(2, selector, matching_type, digest(data, matching_type))


def chain_of(cert: trustme.LeafCert) -> tuple[bytes, ...]:
    return tuple(der(pem) for pem in cert.cert_chain_pems)


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert(MX)


@pytest.fixture(scope="module")
def other(ca: trustme.CA) -> trustme.LeafCert:
    """Another certificate for the same name from the same CA (another key)."""
    return ca.issue_cert(MX)


class TestLookup:
    def zone(self, *records: str, signed: bool = True) -> Zone:
        zone = Zone().add(MX, "A", "127.0.0.2")
        for record in records:
            zone.add(TLSA_OWNER, "TLSA", record)
        if signed:
            zone.sign("d.test")
        return zone

    def lookup(self, server: DnsServer, *, trusted: bool = True) -> TlsaLookup:
        return lookup_tlsa(server.resolver(), MX + ".", dnssec_trusted=trusted)

    def test_authenticated_records_are_usable(
        self, dns_server: DnsServerFactory, leaf: trustme.LeafCert
    ) -> None:
        """TLSA with AD from a trusted resolver: status usable, records parsed."""
        record = record_for(leaf, 3, 1, 1)
        lookup = self.lookup(dns_server(self.zone(str(record))))
        assert (lookup.host, lookup.status, lookup.records) == (MX, "usable", (record,))
        assert lookup.usable_records == (record,)
        assert lookup.requires_tls

    def test_records_without_the_ad_bit_are_ignored(
        self, dns_server: DnsServerFactory, leaf: trustme.LeafCert
    ) -> None:
        """TLSA from an unsigned zone: insecure, nothing usable, TLS not required."""
        record = record_for(leaf, 3, 1, 1)
        lookup = self.lookup(dns_server(self.zone(str(record), signed=False)))
        assert (lookup.status, lookup.records) == ("insecure", (record,))
        assert lookup.usable_records == ()
        assert not lookup.requires_tls
        assert "no AD bit" in lookup.detail

    def test_an_untrusted_resolver_is_not_even_asked(
        self, dns_server: DnsServerFactory, leaf: trustme.LeafCert
    ) -> None:
        """With dnssec_trusted=False the AD bit could lie: no query, status insecure."""
        server = dns_server(self.zone(str(record_for(leaf, 3, 1, 1))))
        lookup = self.lookup(server, trusted=False)
        assert (lookup.status, lookup.usable_records) == ("insecure", ())
        assert server.queries == []

    @pytest.mark.parametrize("usage", [0, 1])
    def test_pkix_usages_are_unusable_but_still_require_tls(
        self, dns_server: DnsServerFactory, leaf: trustme.LeafCert, usage: int
    ) -> None:
        """Usages 0 and 1 alone: unusable (§3.1.3); TLS stays mandatory, unauthenticated."""
        record = record_for(leaf, usage, 1, 1)
        lookup = self.lookup(dns_server(self.zone(str(record))))
        assert (lookup.status, lookup.usable_records) == ("unusable", ())
        assert lookup.requires_tls
        assert "RFC 7672 §3.1.3" in lookup.detail

    def test_only_usable_records_are_kept_for_verification(
        self, dns_server: DnsServerFactory, leaf: trustme.LeafCert
    ) -> None:
        """Among usage 1, an unknown usage 4 and usage 3, only the usage 3 record is usable."""
        good = record_for(leaf, 3, 0, 2)
        records = [str(record_for(leaf, 1, 1, 1)), "4 1 1 " + "00" * 32, str(good)]
        lookup = self.lookup(dns_server(self.zone(*records)))
        assert lookup.status == "usable"
        assert len(lookup.records) == 3
        assert lookup.usable_records == (good,)

    @pytest.mark.parametrize("signed", [True, False])
    def test_no_records_means_dane_does_not_apply(
        self, dns_server: DnsServerFactory, signed: bool
    ) -> None:
        """NXDOMAIN at _25._tcp.<mx>, signed or not: absent."""
        lookup = self.lookup(dns_server(self.zone(signed=signed)))
        assert lookup.status == "absent"
        kind = "secure" if signed else "insecure"
        assert lookup.detail.endswith(f"no TLSA records ({kind} answer)")

    def test_a_failed_lookup_is_reported_as_failed(
        self, dns_server: DnsServerFactory
    ) -> None:
        """SERVFAIL for the TLSA query: failed, not absent (§2.2: may mean defer)."""
        zone = self.zone().servfail(TLSA_OWNER)
        lookup = self.lookup(dns_server(zone))
        assert lookup.status == "failed"
        assert "SERVFAIL" in lookup.detail

    def test_the_callers_resolver_is_left_as_it_was(
        self, dns_server: DnsServerFactory, leaf: trustme.LeafCert
    ) -> None:
        """The DNSSEC settings go on a copy: the shared resolver keeps its EDNS and flags."""
        resolver = dns_server(self.zone(str(record_for(leaf, 3, 1, 1)))).resolver()
        before = (resolver.edns, resolver.ednsflags, resolver.payload, resolver.flags)
        assert lookup_tlsa(resolver, MX, dnssec_trusted=True).status == "usable"
        assert (
            resolver.edns,
            resolver.ednsflags,
            resolver.payload,
            resolver.flags,
        ) == (before)

    def test_names_and_presentation_form(self) -> None:
        """_25._tcp.<host> is the owner name; records read and print as '3 1 1 hex'."""
        assert tlsa_name("MX.d.test.") == TLSA_OWNER
        assert tlsa_name(MX, 2525) == "_2525._tcp.mx.d.test"
        record = TlsaRecord.from_text("3 1 1 " + "AB" * 32)
        assert record == TlsaRecord(3, 1, 1, b"\xab" * 32)
        assert str(record) == "3 1 1 " + "ab" * 32
        with pytest.raises(ValueError, match="four fields"):
            TlsaRecord.from_text("3 1 1")


class TestDaneEe:
    @pytest.mark.parametrize("selector", [0, 1])
    @pytest.mark.parametrize("matching_type", [0, 1, 2])
    def test_the_servers_certificate_matches_its_own_record(
        self, leaf: trustme.LeafCert, selector: int, matching_type: int
    ) -> None:
        """DANE-EE by full certificate or public key, exact, SHA-256 or SHA-512: match."""
        record = record_for(leaf, 3, selector, matching_type)
        result = verify_chain([record], chain_of(leaf), names=[MX])
        assert (result.outcome, result.matched) == ("match", record)
        assert result.authenticated
        assert (
            association_data(chain_of(leaf)[0], selector, matching_type) == record.data
        )

    @pytest.mark.parametrize("selector", [0, 1])
    @pytest.mark.parametrize("matching_type", [0, 1, 2])
    def test_another_certificate_does_not_match(
        self,
        leaf: trustme.LeafCert,
        other: trustme.LeafCert,
        selector: int,
        matching_type: int,
    ) -> None:
        """A certificate with another key, same name and CA: mismatch, saying why."""
        record = record_for(leaf, 3, selector, matching_type)
        result = verify_chain([record], chain_of(other), names=[MX])
        assert (result.outcome, result.matched, result.usable) == (
            "mismatch",
            None,
            (record,),
        )
        assert not result.authenticated
        assert "does not match" in result.detail

    def test_names_and_dates_do_not_matter_for_dane_ee(self, ca: trustme.CA) -> None:
        """An expired certificate for another name still matches its DANE-EE record (§3.1.1)."""
        stale = ca.issue_cert(
            "elsewhere.test",
            not_before=datetime.datetime(2000, 1, 1),
            not_after=datetime.datetime(2001, 1, 1),
        )
        result = verify_chain([record_for(stale, 3, 1, 1)], chain_of(stale), names=[MX])
        assert result.outcome == "match"

    def test_any_usable_record_may_match(
        self, leaf: trustme.LeafCert, other: trustme.LeafCert
    ) -> None:
        """With records for the old and the new key (a rollover), either key matches."""
        records = [record_for(other, 3, 1, 1), record_for(leaf, 3, 1, 1)]
        assert verify_chain(records, chain_of(leaf), names=[]).matched == records[1]


class TestUnusable:
    @pytest.mark.parametrize("usage", [0, 1])
    def test_pkix_records_are_never_matched(
        self, leaf: trustme.LeafCert, usage: int
    ) -> None:
        """A usage 0 or 1 record of the very certificate: no usable records, not a match."""
        record = record_for(leaf, usage, 0, 1)
        result = verify_chain([record], chain_of(leaf), names=[MX])
        assert (result.outcome, result.unusable) == ("no-usable-records", (record,))
        assert not result.authenticated

    @pytest.mark.parametrize(
        ("record", "reason"),
        [
            (TlsaRecord(4, 1, 1, b"\0" * 32), "unknown usage"),
            (TlsaRecord(3, 2, 1, b"\0" * 32), "unknown selector"),
            (TlsaRecord(3, 1, 3, b"\0" * 32), "unknown matching type"),
            (TlsaRecord(3, 1, 1, b"\0" * 31), "32-byte digest"),
            (TlsaRecord(3, 1, 2, b"\0" * 32), "64-byte digest"),
            (TlsaRecord(3, 1, 0, b""), "no association data"),
        ],
    )
    def test_records_with_unknown_parameters_are_unusable(
        self, record: TlsaRecord, reason: str
    ) -> None:
        """Unknown usage, selector or matching type, or a digest of the wrong size."""
        assert not record.usable
        assert reason in str(record.unusable_reason)

    def test_no_certificate_at_all_is_a_mismatch(self, leaf: trustme.LeafCert) -> None:
        """Usable records but an empty chain: mismatch."""
        result = verify_chain([record_for(leaf, 3, 1, 1)], (), names=[MX])
        assert result.outcome == "mismatch"


class TestDaneTa:
    def test_the_full_anchor_certificate_verifies_a_leaf_it_issued(
        self, ca: trustme.CA, leaf: trustme.LeafCert
    ) -> None:
        """2 0 0 with the CA's certificate: the leaf alone (all Python 3.11 gives) matches."""
        record = ca_record(ca, 0, 0)
        result = verify_chain([record], chain_of(leaf)[:1], names=[MX])
        assert (result.outcome, result.matched) == ("match", record)

    @pytest.mark.parametrize(("selector", "matching_type"), [(0, 1), (1, 1), (1, 2)])
    def test_a_digest_of_the_anchor_needs_the_anchor_in_the_chain(
        self, ca: trustme.CA, leaf: trustme.LeafCert, selector: int, matching_type: int
    ) -> None:
        """A digest cannot be checked against the leaf alone; with the CA in the chain it matches."""
        record = ca_record(ca, selector, matching_type)
        alone = verify_chain([record], chain_of(leaf)[:1], names=[MX])
        assert alone.outcome == "mismatch"
        assert "not available" in alone.detail
        full = (*chain_of(leaf), der(ca.cert_pem))
        assert verify_chain([record], full, names=[MX]).outcome == "match"

    def test_an_anchor_above_an_intermediate_is_reached_through_it(
        self, ca: trustme.CA
    ) -> None:
        """Leaf <- intermediate <- root: a record of the root or of the intermediate matches."""
        intermediate = ca.create_child_ca()
        leaf = intermediate.issue_cert(MX)
        chain = chain_of(leaf)
        assert len(chain) == 2
        assert verify_chain([ca_record(ca, 0, 0)], chain, names=[MX]).outcome == "match"
        middle = TlsaRecord(2, 0, 1, hashlib.sha256(chain[1]).digest())
        assert verify_chain([middle], chain, names=[MX]).outcome == "match"
        assert verify_chain([ca_record(ca, 0, 0)], chain[:1], names=[MX]).outcome == (
            "mismatch"
        )

    def test_an_unrelated_anchor_does_not_match(self, leaf: trustme.LeafCert) -> None:
        """A CA that did not issue the leaf: mismatch, even when it is in the chain."""
        stranger = trustme.CA(organization_name="Stranger")
        record = ca_record(stranger, 0, 0)
        chain = (*chain_of(leaf), der(stranger.cert_pem))
        result = verify_chain([record], chain, names=[MX])
        assert result.outcome == "mismatch"
        assert "did not issue" in result.detail

    def test_the_leaf_must_name_the_mx_host(self, ca: trustme.CA) -> None:
        """DANE-TA checks names (§3.2.2): a wildcard covers one label, another name fails."""
        wildcard = ca.issue_cert("*.d.test")
        record = ca_record(ca, 0, 0)
        chain = chain_of(wildcard)
        assert verify_chain([record], chain, names=["MX.d.test."]).outcome == "match"
        for names in (["a.mx.d.test"], ["d.test"], ["mx.other.test"], []):
            result = verify_chain([record], chain, names=names)
            assert result.outcome == "mismatch", names
            assert "names *.d.test" in result.detail

    def test_the_leaf_must_be_valid_now(self, ca: trustme.CA) -> None:
        """DANE-TA checks dates: an expired leaf fails, and passes at a time it was valid."""
        stale = ca.issue_cert(
            MX,
            not_before=datetime.datetime(2000, 1, 1),
            not_after=datetime.datetime(2001, 1, 1),
        )
        record = ca_record(ca, 0, 0)
        result = verify_chain([record], chain_of(stale), names=[MX])
        assert result.outcome == "mismatch"
        assert "not valid now" in result.detail
        then = datetime.datetime(2000, 6, 1, tzinfo=datetime.UTC)
        assert verify_chain(
            [record], chain_of(stale), names=[MX], now=then
        ).authenticated


def test_a_real_handshake_gives_the_chain_that_matches(
    https_server: HttpsServerFactory, ca: trustme.CA
) -> None:
    """peer_chain() of a live TLS connection, unverified as DANE-EE allows, matches 3 1 1."""
    cert = ca.issue_cert(MX)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = https_server(context, host="127.0.0.2")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((server.host, server.port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=MX) as tls,
    ):
        chain = peer_chain(tls)
    assert chain[0] == der(cert.cert_chain_pems[0])
    result = verify_chain([record_for(cert, 3, 1, 1)], chain, names=[MX])
    assert result.outcome == "match"
