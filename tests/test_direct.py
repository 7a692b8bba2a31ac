"""Direct delivery end to end: DNS routing and trying exchangers (matrix rows B, C).

A real mailer resolves through the loopback DNS server and delivers to SMTP
servers on 127.0.0.2, 127.0.0.3, ... (and ::1), all on one port. Tests drive the
worker with ``run_once()`` and a fixed clock unless they are about threads.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from support.mxnet import NOW, MxNet, ipv6_loopback, message
from support.scripted import (
    greeting,
    listen_backlog_full,
    normal,
    tarpit,
)
from support.smtpd import RecordingHandler

from mailstrom_py import (
    DeliveryResult,
    InvalidMessageError,
    Mailstrom,
    QueueFilter,
    Timeouts,
)
from mailstrom_py.delivery import DirectTransport, SessionPool
from mailstrom_py.message import prepare_email

D, DF, F = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED, DeliveryResult.FAILED
Q = DeliveryResult.QUEUED


def send_one(mailer: Mailstrom, to: str = "rcpt@d.test") -> str:
    message_id = mailer.send_email(message(to))
    mailer.run_once()
    return message_id


class TestRouting:
    def test_delivers_to_the_mx_host_and_records_it(self, net: MxNet) -> None:
        """The recipient's status names the exchanger, its address and its reply."""
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert (r.result, r.status_code) == (D, "2.0.0")
        assert r.remote is not None
        assert (r.remote.host, r.remote.address, r.remote.port) == (
            "mx1.d.test",
            "127.0.0.2",
            net.port,
        )
        assert "mx1.d.test[127.0.0.2]" in (r.detail or "")
        assert server.handler.messages[0].rcpt_tos == ("rcpt@d.test",)

    def test_implicit_mx_delivers_to_the_domain_address(self, net: MxNet) -> None:
        """B2: no MX records, an A record: delivered to the domain's own address."""
        net.zone.add("d.test", "A", "127.0.0.2")
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert r.result is D
        assert r.remote is not None and r.remote.host == "d.test"
        assert len(server.handler.messages) == 1

    @pytest.mark.parametrize(
        "setup",
        [
            pytest.param(
                lambda z: z.add("other.test", "A", "127.0.0.2"), id="B1-nxdomain"
            ),
            pytest.param(lambda z: z.add("d.test", "TXT", "x"), id="B3-no-address"),
            pytest.param(
                lambda z: z.add("d.test", "MX", "10 a.gone.test"), id="B10-mx-nxdomain"
            ),
        ],
    )
    def test_unroutable_domains_fail_at_once(self, net: MxNet, setup: object) -> None:
        """B1/B3/B10: no domain, or no address for any exchanger: 5.4.4 on the
        first attempt, never retried, no connection."""
        setup(net.zone)  # type: ignore[operator]
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert (r.result, r.status_code, r.attempts) == (F, "5.4.4", 1)
        assert r.next_attempt_at is None
        assert mailer.run_once(NOW + 3600) == 0
        assert server.handler.connections == 0

    def test_null_mx_fails_with_556_and_no_connection(self, net: MxNet) -> None:
        """B7: "MX 0 ." fails with 5.1.10 (556) immediately; nothing is dialled."""
        net.zone.add("d.test", "MX", "0 .").add("d.test", "A", "127.0.0.2")
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert (r.result, r.status_code) == (F, "5.1.10")
        assert "556" in (r.detail or "")
        assert server.handler.connections == 0

    @pytest.mark.parametrize("behaviour", ["servfail", "refused"])
    def test_dns_trouble_defers_until_the_retry_policy_gives_up(
        self, net: MxNet, behaviour: str
    ) -> None:
        """B4/B6: SERVFAIL or REFUSED defers with 4.4.3, asks DNS again at each
        retry, and fails with 5.4.7 only at max_age."""
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        getattr(net.zone, behaviour)("d.test", "MX")
        mailer = net.mailer()
        message_id = send_one(mailer)
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.status_code, r.next_attempt_at) == (DF, "4.4.3", NOW + 60)
        now = NOW
        while not mailer.query_status(message_id).completed:
            now += 600
            mailer.run_once(now)
            [r] = mailer.query_status(message_id).recipients
            assert r.result is DF or now >= NOW + 3600
        assert (r.result, r.status_code) == (F, "5.4.7")
        assert net.dns.queries.count(("d.test", "MX")) == r.attempts > 2

    def test_a_dns_timeout_defers_within_the_lifetime_while_others_flow(
        self, net: MxNet
    ) -> None:
        """B5: a silent DNS server defers after the resolver lifetime (4.4.3);
        meanwhile another delivery thread delivers another message."""
        net.mx("ok.test", (10, "mx1.ok.test", "127.0.0.2"))
        net.zone.add("slow.test", "MX", "10 mx1.ok.test").drop("slow.test")
        server = net.smtp("127.0.0.2")
        lifetime = 3.0
        config = net.config(
            resolver=net.dns.resolver(timeout=1.0, lifetime=lifetime),
            delivery_threads=2,
        )
        with Mailstrom(config) as mailer:
            started = time.monotonic()
            slow = mailer.send_email(message("a@slow.test"))
            net.dns.wait_for_queries(1)
            fast = mailer.send_email(message("b@ok.test"))
            assert mailer.wait(fast, timeout=lifetime).succeeded
            # Still waiting for DNS: no outcome yet.
            assert mailer.query_status(slow).recipients[0].result is Q
            [r] = mailer.wait(slow, timeout=30).recipients
            elapsed = time.monotonic() - started
        assert (r.result, r.status_code) == (DF, "4.4.3")
        assert "timed out" in (r.detail or "")
        assert lifetime - 0.5 < elapsed < lifetime + 10
        assert len(server.handler.messages) == 1

    def test_an_idn_domain_is_looked_up_in_its_ascii_form(self, net: MxNet) -> None:
        """F3: bücher.test is routed by its A-label; no SMTPUTF8 is needed."""
        net.mx("xn--bcher-kva.test", (10, "mx1.xn--bcher-kva.test", "127.0.0.2"))
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer, "rcpt@bücher.test")).recipients
        assert r.result is D
        assert ("xn--bcher-kva.test", "MX") in net.dns.queries
        [received] = server.handler.messages
        assert received.rcpt_tos == ("rcpt@xn--bcher-kva.test",)
        assert "SMTPUTF8" not in received.mail_options

    def test_an_idna_2008_domain_is_delivered_by_its_a_label(self, net: MxNet) -> None:
        """F3: straße.test is routed as xn--strae-oqa.test (IDNA 2008 keeps "ß",
        where IDNA 2003 read it as strasse.test) and RCPT carries the A-label."""
        net.mx("xn--strae-oqa.test", (10, "mx1.xn--strae-oqa.test", "127.0.0.2"))
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer, "rcpt@straße.test")).recipients
        assert r.result is D
        assert ("xn--strae-oqa.test", "MX") in net.dns.queries
        [received] = server.handler.messages
        assert received.rcpt_tos == ("rcpt@xn--strae-oqa.test",)

    def test_an_invalid_idn_is_refused_and_not_stored(self, net: MxNet) -> None:
        """A domain label IDNA 2008 disallows raises InvalidMessageError at
        send_email(); nothing is stored or sent."""
        mailer = net.mailer()
        with pytest.raises(InvalidMessageError, match="not a valid IDN label"):
            mailer.send_email(message("rcpt@\u2603.test"))
        assert mailer.storage.count(QueueFilter()) == 0
        assert mailer.run_once() == 0

    def test_recipients_are_grouped_by_domain(self, net: MxNet) -> None:
        """One transaction per domain (case-insensitive), one RCPT per recipient, and
        each domain's result is its own."""
        net.mx("a.test", (10, "mx.a.test", "127.0.0.2"))
        net.mx("b.test", (10, "mx.b.test", "127.0.0.3"))
        server_a, server_b = net.smtp("127.0.0.2"), net.smtp("127.0.0.3")
        mailer = net.mailer()
        message_id = send_one(mailer, "x@a.test, y@A.TEST, z@b.test, w@nx.test")
        results = [
            (r.address, r.result) for r in mailer.query_status(message_id).recipients
        ]
        assert results == [
            ("x@a.test", D),
            ("y@A.TEST", D),
            ("z@b.test", D),
            ("w@nx.test", F),
        ]
        assert [m.rcpt_tos for m in server_a.handler.messages] == [
            ("x@a.test", "y@A.TEST")
        ]
        assert [m.rcpt_tos for m in server_b.handler.messages] == [("z@b.test",)]

    def test_an_address_literal_is_delivered_without_dns(self, net: MxNet) -> None:
        """RFC 5321 §4.1.3: user@[127.0.0.2] goes to that address; DNS is not asked."""
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer, "user@[127.0.0.2]")).recipients
        assert r.result is D
        assert server.handler.messages[0].rcpt_tos == ("user@[127.0.0.2]",)
        assert net.dns.queries == []


class TestTryingExchangers:
    def test_a_refusing_exchanger_is_passed_over_in_the_same_attempt(
        self, net: MxNet
    ) -> None:
        """B8: MX 10 refuses, MX 20 delivers, in one attempt; the status says so."""
        net.mx(
            "d.test", (10, "mx1.d.test", "127.0.0.2"), (20, "mx2.d.test", "127.0.0.3")
        )
        net.refusing("127.0.0.2")
        server = net.smtp("127.0.0.3")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert (r.result, r.attempts) == (D, 1)
        assert r.remote is not None and r.remote.address == "127.0.0.3"
        assert "cannot connect to mx1.d.test[127.0.0.2]" in (r.detail or "")
        assert len(server.handler.messages) == 1

    def test_exchangers_are_tried_in_preference_order(self, net: MxNet) -> None:
        """B8: the preference 10 host is dialled before the preference 20 one."""
        net.mx(
            "d.test", (20, "mx2.d.test", "127.0.0.3"), (10, "mx1.d.test", "127.0.0.2")
        )
        net.scripted("127.0.0.2", greeting("421 4.3.2 busy"))
        net.scripted("127.0.0.3", normal())
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert r.result is D
        assert net.arrivals == ["127.0.0.2", "127.0.0.3"]

    def test_equal_preferences_share_the_first_try(self, net: MxNet) -> None:
        """B9: over 300 deliveries each of three equal exchangers is tried first
        about a third of the time (chi-square, df=2, p > 0.001); the preference 20
        exchanger is never tried."""
        hosts = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}
        for name, address in hosts.items():
            net.mx("d.test", (10, f"{name}.d.test", address))
            net.scripted(address, normal())
        net.mx("d.test", (20, "z.d.test", "127.0.0.5"))
        net.scripted("127.0.0.5", normal())
        transport = DirectTransport(
            net.resolver_config(),
            helo_name="client.test",
            timeouts=Timeouts.uniform(5),
            rng=random.Random(2024),
            sessions=SessionPool(max_messages=1),  # every delivery dials afresh
        )
        email = prepare_email(message("rcpt@d.test"), helo_name="client.test")
        runs = 300
        for _ in range(runs):
            [outcome] = transport.deliver(email, ["rcpt@d.test"])
            assert outcome.result is D
        counts = Counter(net.arrivals)
        expected = runs / 3
        chi_square = sum((counts[a] - expected) ** 2 / expected for a in hosts.values())
        assert chi_square < 13.82, counts  # seed 2024: 103 / 101 / 96, chi2 0.26
        assert sum(counts.values()) == runs and counts["127.0.0.5"] == 0

    @pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")
    def test_both_address_families_are_tried(self, net: MxNet) -> None:
        """B11: AAAA ::1 refuses, A 127.0.0.1 accepts: delivered, both tried."""
        net.zone.add("d.test", "MX", "10 mx.d.test")
        net.zone.add("mx.d.test", "AAAA", "::1").add("mx.d.test", "A", "127.0.0.1")
        net.refusing("::1")
        server = net.smtp("127.0.0.1")
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert r.result is D
        assert r.remote is not None and r.remote.address == "127.0.0.1"
        assert "mx.d.test[::1]" in (r.detail or "")
        assert len(server.handler.messages) == 1

    @pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")
    def test_each_attempt_starts_with_the_other_family(self, net: MxNet) -> None:
        """B11: the first attempt starts with IPv6, the retry with IPv4 (as mox)."""
        net.zone.add("d.test", "MX", "10 mx.d.test")
        net.zone.add("mx.d.test", "AAAA", "::1").add("mx.d.test", "A", "127.0.0.1")
        for host in ("::1", "127.0.0.1"):
            net.scripted(host, normal(on_mail=lambda conv, line: "451 4.3.0 later"))
        mailer = net.mailer(session_max_messages=1)
        message_id = send_one(mailer)
        assert net.arrivals == ["::1", "127.0.0.1"]
        mailer.run_once(NOW + 60)
        assert net.arrivals[2:] == ["127.0.0.1", "::1"]
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.attempts) == (DF, 2)

    @pytest.mark.parametrize(
        ("limits", "connections"),
        [
            ({}, 2),
            ({"max_sessions": 10}, 5),
            ({"max_sessions": 10, "max_addresses": 3}, 3),
        ],
    )
    def test_addresses_and_sessions_per_delivery_are_limited(
        self, net: MxNet, limits: dict[str, int], connections: int
    ) -> None:
        """At most 2 sessions and 5 addresses per delivery by default (Postfix);
        the recipients are then deferred with the servers' replies."""
        for n in range(2, 8):
            net.mx("d.test", (n, f"mx{n}.d.test", f"127.0.0.{n}"))
            net.scripted(f"127.0.0.{n}", greeting("421 4.3.2 busy"))
        mailer = net.mailer(**limits)
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert len(net.arrivals) == connections
        assert (r.result, r.status_code) == (DF, "4.4.2")
        assert r.last_reply is not None and r.last_reply.code == 421

    def test_all_exchangers_refusing_then_back(self, net: MxNet) -> None:
        """C1: every exchanger refuses: 4.4.1 and a retry after the backoff;
        the retry delivers; attempts is 2."""
        net.mx(
            "d.test", (10, "mx1.d.test", "127.0.0.2"), (20, "mx2.d.test", "127.0.0.3")
        )
        net.refusing("127.0.0.3")
        mailer = net.mailer()
        message_id = send_one(mailer)
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.status_code, r.next_attempt_at) == (DF, "4.4.1", NOW + 60)
        server = net.smtp("127.0.0.2")
        mailer.run_once(NOW + 60)
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.attempts) == (D, 2)
        assert len(server.handler.messages) == 1

    def test_a_connect_timeout_moves_on_to_the_next_exchanger(self, net: MxNet) -> None:
        """C2: a connect that times out (after connect=1 s) passes to the next MX."""
        net.mx(
            "d.test", (10, "mx1.d.test", "127.0.0.2"), (20, "mx2.d.test", "127.0.0.3")
        )
        server = net.smtp("127.0.0.3")
        with listen_backlog_full("127.0.0.2", net.port):
            mailer = net.mailer(timeouts=Timeouts(connect=1.0, greeting=5))
            started = time.monotonic()
            [r] = mailer.query_status(send_one(mailer)).recipients
            elapsed = time.monotonic() - started
        assert (
            r.result is D and r.remote is not None and r.remote.address == "127.0.0.3"
        )
        assert "mx1.d.test[127.0.0.2]" in (r.detail or "") and "timed out" in (
            r.detail or ""
        )
        assert 0.9 < elapsed < 10
        assert len(server.handler.messages) == 1

    def test_a_tarpit_defers_after_the_greeting_timeout(self, net: MxNet) -> None:
        """C3: a server that never greets defers (4.4.2) after greeting=1 s."""
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.scripted("127.0.0.2", tarpit(30))
        mailer = net.mailer(timeouts=Timeouts(connect=5, greeting=1.0))
        started = time.monotonic()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert (r.result, r.status_code) == (DF, "4.4.2")
        assert "no greeting" in (r.detail or "")
        assert time.monotonic() - started < 10

    @pytest.mark.parametrize("reply", ["554 5.3.2 go away", "421 4.3.2 busy"])
    def test_a_refusing_greeting_defers_or_passes_on(
        self, net: MxNet, reply: str
    ) -> None:
        """C4/C5: a 554 or 421 greeting at the only MX defers (never fails); with a
        second MX the message goes there."""
        net.mx("one.test", (10, "mx1.d.test", "127.0.0.2"))
        net.mx(
            "two.test", (10, "mx1.d.test", "127.0.0.2"), (20, "mx2.d.test", "127.0.0.3")
        )
        net.scripted("127.0.0.2", greeting(reply))
        server = net.smtp("127.0.0.3")
        mailer = net.mailer()
        message_id = send_one(mailer, "a@one.test, b@two.test")
        one, two = mailer.query_status(message_id).recipients
        assert (one.result, one.status_code) == (DF, "4.4.2")
        assert one.last_reply is not None and str(one.last_reply.code) == reply[:3]
        assert two.result is D
        assert server.handler.messages[0].rcpt_tos == ("b@two.test",)

    def test_ehlo_refused_falls_back_to_helo(self, net: MxNet) -> None:
        """C6: EHLO refused: HELO, then delivery without extensions; if TLS is
        required, deferred with 4.7.4 and no MAIL."""
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        handler = RecordingHandler(ehlo_reply="502 5.5.2 no EHLO here")
        server = net.smtp("127.0.0.2", handler=handler)
        mailer = net.mailer()
        [r] = mailer.query_status(send_one(mailer)).recipients
        assert r.result is D
        assert handler.commands[:3] == ["EHLO", "HELO", "MAIL"]
        strict = net.mailer(require_tls=True)
        [r] = strict.query_status(send_one(strict)).recipients
        assert (r.result, r.status_code) == (DF, "4.7.4")
        assert handler.commands.count("MAIL") == 1
        assert len(server.handler.messages) == 1
