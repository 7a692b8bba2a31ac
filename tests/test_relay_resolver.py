"""Relay delivery with the relay's name looked up through a given resolver
(matrix row B12): a relay that does not resolve is never a permanent failure.
"""

from __future__ import annotations

import dns.resolver
from support.mxnet import NOW, RETRY, MxNet, message

from mailstrom_py import Config, DeliveryResult, Mailstrom, RelayConfig, Timeouts

D, DF, F = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED, DeliveryResult.FAILED


def send_one(mailer: Mailstrom, to: str) -> str:
    message_id = mailer.send_email(message(to))
    mailer.run_once()
    return message_id


class TestRelayNameResolution:
    def relay_mailer(
        self, resolver: dns.resolver.Resolver, host: str, port: int
    ) -> Mailstrom:
        config = Config(
            helo_name="client.test",
            delivery=RelayConfig(host=host, port=port, tls="none", resolver=resolver),
            retry=RETRY,
            timeouts=Timeouts.uniform(5),
        )
        return Mailstrom(config, clock=lambda: NOW)

    def test_an_unresolvable_relay_defers_until_the_end(self, net: MxNet) -> None:
        """B12: a relay name that does not resolve defers (4.4.4) at every attempt
        and fails only when the retry policy gives up (5.4.7)."""
        net.zone.add("other.test", "A", "127.0.0.2")
        mailer = self.relay_mailer(net.dns.resolver(), "nx.relay.test", net.port)
        message_id = send_one(mailer, "a@d.test")
        now = NOW
        while not mailer.query_status(message_id).completed:
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.status_code) == (DF, "4.4.4")
            now += 600
            mailer.run_once(now)
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.status_code) == (F, "5.4.7")
        assert "nx.relay.test" in (r.detail or "")
        assert ("nx.relay.test", "AAAA") in net.dns.queries
        mailer.stop()

    def test_a_relay_name_is_resolved_through_the_given_resolver(
        self, net: MxNet
    ) -> None:
        """RelayConfig(resolver=...) looks the relay up there and dials its address."""
        net.zone.add("relay.test", "A", "127.0.0.2")
        server = net.smtp("127.0.0.2")
        mailer = self.relay_mailer(net.dns.resolver(), "relay.test", net.port)
        [r] = mailer.query_status(send_one(mailer, "a@d.test")).recipients
        assert r.result is D
        assert r.remote is not None
        assert (r.remote.host, r.remote.address) == ("relay.test", "127.0.0.2")
        assert len(server.handler.messages) == 1
        mailer.stop()

    def test_a_relay_name_with_an_underscore_is_delivered_to(self, net: MxNet) -> None:
        """A container-style relay name with "_" is accepted, resolved and used."""
        net.zone.add("smtp_relay.test", "A", "127.0.0.2")
        server = net.smtp("127.0.0.2")
        mailer = self.relay_mailer(net.dns.resolver(), "smtp_relay.test", net.port)
        [r] = mailer.query_status(send_one(mailer, "a@d.test")).recipients
        assert r.result is D
        assert r.remote is not None and r.remote.host == "smtp_relay.test"
        assert len(server.handler.messages) == 1
        mailer.stop()

    def test_relay_dns_trouble_defers(self, net: MxNet) -> None:
        """B12: SERVFAIL for the relay name defers with 4.4.3."""
        net.zone.add("relay.test", "A", "127.0.0.2").servfail("relay.test")
        mailer = self.relay_mailer(net.dns.resolver(), "relay.test", net.port)
        [r] = mailer.query_status(send_one(mailer, "a@d.test")).recipients
        assert (r.result, r.status_code) == (DF, "4.4.3")
        mailer.stop()
