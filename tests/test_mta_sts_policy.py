"""MTA-STS records and policies as text: RFC 8461 §3.1, §3.2 and §4.1.

Parsing is strict: anything the RFC's grammar does not allow makes the record
or policy unusable, so the domain is treated as having no policy. The TXT
lookup runs against the loopback DNS server.
"""

from __future__ import annotations

import pytest
from support.dnsd import DnsServerFactory, Zone

from mailstrom_py.delivery.routing.dnsquery import DnsTrouble
from mailstrom_py.delivery.routing.mta_sts import (
    MAX_AGE_LIMIT,
    CachedPolicy,
    PolicyError,
    RecordError,
    StsMode,
    StsPolicy,
    StsRecord,
    choose_record,
    lookup_record,
    mx_matches,
    parse_policy,
    parse_record,
)

GOOD = "version: STSv1\nmode: enforce\nmx: mx1.example.net\nmx: *.example.org\nmax_age: 86400\n"


class TestRecord:
    @pytest.mark.parametrize(
        ("text", "record"),
        [
            ("v=STSv1; id=20240101T000000", StsRecord("20240101T000000")),
            ("v=STSv1;id=abc;", StsRecord("abc")),
            ("v=STSv1;\tid=abc \t;  ", StsRecord("abc")),
            ("v=STSv1; id=a; ext=x-1.2", StsRecord("a", (("ext", "x-1.2"),))),
            ("v=STSv1; id=first; id=second", StsRecord("first")),
            ("v=STSv1; id=" + "9" * 32, StsRecord("9" * 32)),
        ],
    )
    def test_valid_records_parse(self, text: str, record: StsRecord) -> None:
        """Records following §3.1's grammar give their id and extensions."""
        assert parse_record(text) == record

    @pytest.mark.parametrize(
        "text",
        [
            "v=STSv1",
            "v=STSv1;",
            "v=STSv1; ext=1",
            "v=STSv1; id=",
            "v=STSv1; id=with-dash",
            "v=STSv1; id=" + "9" * 33,
            "v=STSv1; id=a;; ext=1",
            "v=STSv1; id=a; ext=has space",
            "v=STSv1; id=a; =value",
            "v=STSv2; id=a",
            "V=STSv1; id=a",
        ],
    )
    def test_malformed_records_are_refused(self, text: str) -> None:
        """A record breaking §3.1's grammar raises RecordError."""
        with pytest.raises(RecordError):
            parse_record(text)

    def test_records_not_beginning_with_the_version_are_discarded(self) -> None:
        """Other TXT records at the name, even near misses, are ignored (§3.1)."""
        texts = ["google-site-verification=x", "v=STSv1 ; id=old", "v=STSv1; id=new"]
        assert choose_record(texts) == StsRecord("new")

    @pytest.mark.parametrize(
        "texts",
        [[], ["v=spf1 -all"], ["v=STSv1; id=a", "v=STSv1; id=b"], ["v=STSv1; id=a-b"]],
    )
    def test_no_record_two_records_or_a_bad_one_is_no_record(
        self, texts: list[str]
    ) -> None:
        """Exactly one valid v=STSv1 record must be left, else there is no policy."""
        with pytest.raises(RecordError):
            choose_record(texts)


class TestRecordLookup:
    def test_the_record_is_read_from_dns_with_its_strings_joined(
        self, dns_server: DnsServerFactory
    ) -> None:
        """A TXT record of several strings is one record (§3.1); its TTL comes back."""
        zone = Zone()
        zone.add("_mta-sts.d.test", "TXT", '"v=STSv1; " "id=split1"', ttl=120)
        zone.add("_mta-sts.d.test", "TXT", "v=spf1 -all", ttl=120)
        answer = lookup_record(dns_server(zone).resolver(), "d.test")
        assert answer.record == StsRecord("split1")
        assert answer.ttl == 120

    @pytest.mark.parametrize("records", [[], ["v=STSv1; id=a", "v=STSv1; id=b"]])
    def test_a_missing_or_ambiguous_record_is_no_record(
        self, dns_server: DnsServerFactory, records: list[str]
    ) -> None:
        """No TXT record, or two, give no record and say why."""
        zone = Zone().add("d.test", "MX", "10 mx.d.test")
        for text in records:
            zone.add("_mta-sts.d.test", "TXT", text)
        answer = lookup_record(dns_server(zone).resolver(), "d.test")
        assert answer.record is None
        assert answer.detail.startswith("_mta-sts.d.test: ")

    def test_dns_trouble_is_raised_not_taken_for_no_record(
        self, dns_server: DnsServerFactory
    ) -> None:
        """SERVFAIL raises DnsTrouble: the domain may well have a policy."""
        zone = Zone().servfail("_mta-sts.d.test")
        with pytest.raises(DnsTrouble):
            lookup_record(dns_server(zone).resolver(), "d.test")


class TestPolicy:
    def test_a_good_policy_parses(self) -> None:
        """Every field of §3.2 is read, patterns in lower case."""
        policy = parse_policy(GOOD.replace("mx1", "MX1"))
        assert policy == StsPolicy(
            StsMode.ENFORCE, ("mx1.example.net", "*.example.org"), 86400
        )

    def test_crlf_lines_whitespace_and_unknown_keys(self) -> None:
        """CRLF ends, spaces around values, unknown keys kept aside, trailing blank lines."""
        text = "version: STSv1\r\nmode:testing  \r\nmx:\tmx.d.test\r\nfoo_bar: a b\r\nmax_age: 0\r\n\r\n"
        policy = parse_policy(text)
        assert policy.mode is StsMode.TESTING
        assert policy.mx == ("mx.d.test",)
        assert policy.max_age == 0
        assert policy.extensions == (("foo_bar", "a b"),)

    def test_repeated_fields_count_once_except_mx(self) -> None:
        """The first of a repeated field counts; every mx line counts (§3.2)."""
        text = GOOD + "mode: none\nmax_age: 5\nmx: late.example.net\n"
        policy = parse_policy(text)
        assert (policy.mode, policy.max_age) == (StsMode.ENFORCE, 86400)
        assert policy.mx[-1] == "late.example.net"

    def test_mode_none_needs_no_mx(self) -> None:
        """A policy of mode none may list no MX hosts."""
        policy = parse_policy("version: STSv1\nmode: none\nmax_age: 60\n")
        assert (policy.mode, policy.mx) == (StsMode.NONE, ())

    def test_max_age_may_be_one_year_but_not_more(self) -> None:
        """max_age up to 31557600 is valid; one more second is an error."""
        assert parse_policy(GOOD.replace("86400", str(MAX_AGE_LIMIT))).max_age == (
            MAX_AGE_LIMIT
        )
        with pytest.raises(PolicyError, match="one year"):
            parse_policy(GOOD.replace("86400", str(MAX_AGE_LIMIT + 1)))

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("version: STSv1\n", ""),
            ("version: STSv1", "version: STSv2"),
            ("version: STSv1", "Version: STSv1"),
            ("mode: enforce", "mode: Enforce"),
            ("mode: enforce", "mode: strict"),
            ("mode: enforce\n", ""),
            ("max_age: 86400\n", ""),
            ("max_age: 86400", "max_age: -1"),
            ("max_age: 86400", "max_age: 1e5"),
            ("max_age: 86400", "max_age: 12345678901"),
            ("mx: mx1.example.net\nmx: *.example.org\n", ""),
            ("mx1.example.net", "mx1.example.net."),
            ("mx1.example.net", "*.*.example.net"),
            ("mx1.example.net", "mx*.example.net"),
            ("mx1.example.net", "-mx.example.net"),
            ("mx1.example.net", "mx_1.example.net"),
            ("mx1.example.net", "bücher.example"),
            ("mx: mx1", "mx mx1"),
            ("\nmode", "\n\nmode"),
            ("mode: enforce", "mode: enforce\rmx: x.test"),
            ("mode: enforce", "mode:"),
        ],
    )
    def test_any_error_makes_the_whole_policy_invalid(self, old: str, new: str) -> None:
        """A missing field, a bad value, a stray line or character: PolicyError."""
        assert old in GOOD
        with pytest.raises(PolicyError):
            parse_policy(GOOD.replace(old, new, 1))

    def test_the_served_text_parses_back_to_the_same_policy(self) -> None:
        """StsPolicy.text() writes a policy parse_policy reads back unchanged."""
        policy = parse_policy(GOOD + "ext.1: some value\n")
        assert parse_policy(policy.text()) == policy

    def test_a_policy_keeps_its_lines_as_served(self) -> None:
        """A parsed policy keeps its lines as they came (line ends and blank
        lines at the end dropped), for TLS reports: text() and served_lines
        give them back, through a cache's JSON too; the lines take no part
        in comparisons. A policy built, not parsed, serves its fields."""
        text = "mode: enforce\r\nversion: STSv1\r\nmx: MX.d.test\r\nmax_age: 60\r\n\r\n"
        lines = ("mode: enforce", "version: STSv1", "mx: MX.d.test", "max_age: 60")
        policy = parse_policy(text)
        assert policy.lines == policy.served_lines == lines
        assert policy.text() == "".join(f"{line}\n" for line in lines)
        assert policy == StsPolicy(StsMode.ENFORCE, ("mx.d.test",), 60)
        entry = CachedPolicy("d.test", "id1", policy, 1700000000.5)
        assert CachedPolicy.from_json(entry.to_json()).policy.lines == lines
        built = StsPolicy(StsMode.TESTING, ("mx.d.test",), 60)
        assert built.served_lines == (
            "version: STSv1",
            "mode: testing",
            "mx: mx.d.test",
            "max_age: 60",
        )

    def test_a_cached_policy_survives_json(self) -> None:
        """CachedPolicy.to_json and from_json round-trip; junk raises ValueError."""
        entry = CachedPolicy("d.test", "id1", parse_policy(GOOD), 1700000000.5)
        assert CachedPolicy.from_json(entry.to_json()) == entry
        assert entry.expires_at == 1700000000.5 + 86400
        for junk in ["", "{}", '{"domain": 1}', entry.to_json().replace("STSv1", "x")]:
            with pytest.raises(ValueError, match="not a cached MTA-STS policy"):
                CachedPolicy.from_json(junk)


class TestMxMatching:
    POLICY = StsPolicy(StsMode.ENFORCE, ("mx1.example.net", "*.example.org"), 60)

    @pytest.mark.parametrize(
        "host",
        ["mx1.example.net", "MX1.Example.NET", "mx1.example.net.", "a.example.org"],
    )
    def test_matching_hosts(self, host: str) -> None:
        """Exact names match case-insensitively; *. matches one label below (§4.1)."""
        assert mx_matches(self.POLICY, host)
        assert self.POLICY.allows(host)

    @pytest.mark.parametrize(
        "host",
        [
            "mx2.example.net",
            "example.net",
            "x.mx1.example.net",
            "example.org",
            "a.b.example.org",
            "aexample.org",
            ".example.org",
        ],
    )
    def test_other_hosts_do_not_match(self, host: str) -> None:
        """Other names, the wildcard's own domain and two labels below do not match."""
        assert not mx_matches(self.POLICY, host)

    def test_a_policy_without_patterns_matches_nothing(self) -> None:
        """Mode none with no mx lines allows no host by pattern."""
        assert not mx_matches(StsPolicy(StsMode.NONE, (), 60), "mx1.example.net")
