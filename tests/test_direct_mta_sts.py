"""Direct delivery under the recipient domain's MTA-STS policy (RFC 8461),
end to end on loopback.

The loopback DNS server publishes ``_mta-sts.d.test`` and points
``mta-sts.d.test`` at an HTTPS server on 127.0.0.9 port 443 whose certificate
the trustme test CA issued; ``DirectConfig.mta_sts_context`` trusts that CA
for the policy fetch and for the exchangers. Exchangers are aiosmtpd servers
on 127.0.0.x with good, self-signed or wrong-name certificates.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import trustme
from support.https import HttpsServer, HttpsServerFactory, Reply
from support.mxnet import NOW, MxNet, message
from support.tls import client_context, self_signed_server_context, server_context

from mailstrom_py import (
    DeliveryResult,
    Mailstrom,
    PostgresStorage,
    SqliteStorage,
    Storage,
)
from mailstrom_py.config import DestinationLimits, ShapingConfig

D, DF = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED
PATH = "/.well-known/mta-sts.txt"
POLICY_HOST = "127.0.0.9"


def policy(mode: str = "enforce", *mx: str) -> Reply:
    lines = [f"version: STSv1\nmode: {mode}\n"]
    lines += [f"mx: {pattern}\n" for pattern in mx or ("mx1.d.test",)]
    lines.append("max_age: 86400\n")
    return Reply(body="".join(lines).encode())


@pytest.fixture
def https(net: MxNet, https_server: HttpsServerFactory, ca: trustme.CA) -> HttpsServer:
    """The policy host of d.test, publishing policy id 1 (no policy served yet)."""
    net.zone.add("mta-sts.d.test", "A", POLICY_HOST)
    net.zone.set("_mta-sts.d.test", "TXT", "v=STSv1; id=1", ttl=0)
    return https_server(
        server_context(ca, "mta-sts.d.test"), host=POLICY_HOST, port=443
    )


def mailer(
    net: MxNet, ca: trustme.CA, storage: Storage | None = None, **options: object
) -> Mailstrom:
    return net.mailer(storage, mta_sts_context=client_context(ca), **options)


def deliver(mailer: Mailstrom, raw: bytes) -> list:  # type: ignore[type-arg]
    message_id = mailer.send_email(raw)
    mailer.run_once()
    return list(mailer.query_status(message_id).recipients)


def waived(to: str) -> bytes:
    return message(to).replace(b"\r\n\r\n", b"\r\nTLS-Required: No\r\n\r\n", 1)


class TestEnforce:
    def test_a_verified_exchanger_gets_the_mail(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """enforce, and mx1.d.test presents a certificate for its name from a
        trusted CA: delivered over verified TLS, the session recorded as held
        to d.test's MTA-STS policy."""
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        server = net.smtp(
            "127.0.0.2", starttls_context=server_context(ca, "mx1.d.test")
        )
        [r] = deliver(mailer(net, ca), message("a@d.test"))
        assert r.result is D
        assert r.remote.tls_verified and r.remote.tls_version
        assert (r.remote.tls_policy, r.remote.tls_policy_domain) == ("sts", "d.test")
        assert r.remote.tls_result == "success"
        assert server.handler.messages[0].tls
        assert https.requests == [("mta-sts.d.test", PATH)]

    def test_the_session_carries_the_policy_as_fetched(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """The policy comes with CRLF line ends, its fields in an order of
        its own, an unknown field and a pattern in capitals: the session's
        policy strings are its lines as fetched, line ends dropped (RFC 8460
        §4.4), for its TLS report."""
        body = (
            "version: STSv1\r\nmx: MX1.d.test\r\nmode: enforce\r\n"
            "max_age: 86400\r\nowner: postmaster\r\n\r\n"
        )
        https.replies[PATH] = Reply(body=body.encode())
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
        [r] = deliver(mailer(net, ca), message("a@d.test"))
        assert r.result is D and r.remote.tls_verified
        assert r.remote.tls_policy_strings == (
            "version: STSv1",
            "mx: MX1.d.test",
            "mode: enforce",
            "max_age: 86400",
            "owner: postmaster",
        )

    @pytest.mark.parametrize(
        ("names", "result"),
        [
            pytest.param(("other.test",), "certificate-host-mismatch", id="wrong-name"),
            pytest.param(None, "certificate-not-trusted", id="self-signed"),
        ],
    )
    def test_a_bad_certificate_defers_and_nothing_goes_in_plaintext(
        self,
        net: MxNet,
        https: HttpsServer,
        ca: trustme.CA,
        names: tuple[str, ...] | None,
        result: str,
    ) -> None:
        """enforce, and the exchanger's certificate does not verify against its
        MX name: deferred with 4.7.5, one connection, no MAIL (no plaintext
        retry), the failure recorded with its RFC 8460 result type."""
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        context = (
            server_context(ca, *names)
            if names
            else self_signed_server_context("mx1.d.test")
        )
        server = net.smtp("127.0.0.2", starttls_context=context)
        [r] = deliver(mailer(net, ca), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert "MAIL" not in server.handler.commands
        assert server.handler.connections == 1
        assert (r.remote.tls_policy, r.remote.tls_result) == ("sts", result)
        assert r.remote.tls_failure and "mx1.d.test" in r.remote.tls_failure

    def test_an_exchanger_without_starttls_defers(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """enforce, and the exchanger offers no STARTTLS: deferred with 4.7.4,
        recorded as starttls-not-supported."""
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        server = net.smtp("127.0.0.2")
        [r] = deliver(mailer(net, ca), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.4")
        assert r.remote.tls_result == "starttls-not-supported"
        assert "MAIL" not in server.handler.commands

    def test_an_exchanger_the_policy_does_not_name_is_never_contacted(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """enforce with mx: mx1.d.test; the preferred MX mx0.d.test is not in
        the policy: it gets no connection, and mx1.d.test gets the mail."""
        https.replies[PATH] = policy("enforce", "mx1.d.test")
        net.mx(
            "d.test", (10, "mx0.d.test", "127.0.0.3"), (20, "mx1.d.test", "127.0.0.2")
        )
        intruder = net.smtp(
            "127.0.0.3", starttls_context=server_context(ca, "mx0.d.test")
        )
        good = net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
        [r] = deliver(mailer(net, ca), message("a@d.test"))
        assert r.result is D and r.remote.host == "mx1.d.test"
        assert intruder.handler.connections == 0
        assert len(good.handler.messages) == 1

    def test_no_exchanger_in_the_policy_defers_after_a_refetch(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """enforce, and no MX matches: the policy is fetched again (RFC 8461
        §5.1), then the recipient is deferred (4.7.0) with no connection made
        and a status naming the policy's patterns."""
        https.replies[PATH] = policy("enforce", "*.mail.d.test")
        net.mx("d.test", (10, "mx0.d.test", "127.0.0.3"))
        intruder = net.smtp(
            "127.0.0.3", starttls_context=server_context(ca, "mx0.d.test")
        )
        [r] = deliver(mailer(net, ca), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.0")
        assert "*.mail.d.test" in (r.detail or "") and "mx0.d.test" in (r.detail or "")
        assert r.remote is None
        assert intruder.handler.connections == 0
        assert len(https.requests) == 2


class TestTesting:
    def test_testing_mode_delivers_despite_a_bad_certificate(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """testing, and the certificate is self-signed: the verified try fails,
        the mail goes over unverified TLS (never plaintext), recorded as held
        to the policy, with its lines, and not verified."""
        https.replies[PATH] = policy("testing")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        server = net.smtp(
            "127.0.0.2", starttls_context=self_signed_server_context("mx1.d.test")
        )
        [r] = deliver(mailer(net, ca), message("a@d.test"))
        assert r.result is D
        assert r.remote.tls_version and not r.remote.tls_verified
        assert r.remote.tls_policy == "sts"
        assert r.remote.tls_policy_strings == (
            "version: STSv1",
            "mode: testing",
            "mx: mx1.d.test",
            "max_age: 86400",
        )
        assert "certificate" in (r.detail or "")
        assert server.handler.messages[0].tls

    def test_testing_mode_uses_exchangers_outside_the_policy(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """testing with mx: mx1.d.test: mx0.d.test is still used."""
        https.replies[PATH] = policy("testing", "mx1.d.test")
        net.mx("d.test", (10, "mx0.d.test", "127.0.0.3"))
        server = net.smtp(
            "127.0.0.3", starttls_context=server_context(ca, "mx0.d.test")
        )
        [r] = deliver(mailer(net, ca), message("a@d.test"))
        assert r.result is D and r.remote.tls_verified
        assert len(server.handler.messages) == 1


class TestCache:
    def test_a_cached_policy_outlives_a_failed_fetch_and_a_restart(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA, tmp_path: Path
    ) -> None:
        """A mailer fetches the enforce policy into its cache file. A new
        mailer on the same file, while the record's id has changed and the
        policy host answers 404, still enforces the cached policy: a
        self-signed exchanger gets nothing and the recipient is deferred."""
        cache = str(tmp_path / "mta-sts.json")
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        server = net.smtp(
            "127.0.0.2", starttls_context=self_signed_server_context("mx1.d.test")
        )
        [r] = deliver(mailer(net, ca, mta_sts_cache=cache), message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        net.zone.set("_mta-sts.d.test", "TXT", "v=STSv1; id=2", ttl=0)
        del https.replies[PATH]
        restarted = mailer(net, ca, mta_sts_cache=cache)
        [r] = deliver(restarted, message("b@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert r.remote.tls_policy == "sts"
        assert len(https.requests) == 2  # the second fetch failed with 404
        assert server.handler.messages == []
        without_cache = mailer(net, ca)
        [r] = deliver(without_cache, message("c@d.test"))
        assert r.result is D  # no policy to be had: delivered as without one


class TestCacheInStorage:
    """With no cache file, a mailer on SQLite or PostgreSQL keeps fetched
    policies in its storage (RFC 8461 §5): a restart, or another worker on
    the same queue, starts with them."""

    def stripped(self, net: MxNet, https: HttpsServer) -> None:
        """An attacker strips the policy record and blocks the policy host."""
        net.zone.remove("_mta-sts.d.test")
        del https.replies[PATH]

    def test_a_restart_on_the_same_file_still_enforces_the_policy(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA, tmp_path: Path
    ) -> None:
        """A mailer on outbox.db fetches the enforce policy; the exchanger's
        certificate is self-signed, so the recipient is deferred (4.7.5). The
        record is then stripped and the policy host blocked: a new mailer on
        the same file still holds the exchanger to the policy, and the
        exchanger gets nothing, while a mailer on a new file, with nothing
        cached, delivers in the clear of the policy."""
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        server = net.smtp(
            "127.0.0.2", starttls_context=self_signed_server_context("mx1.d.test")
        )
        first = mailer(net, ca, storage=SqliteStorage(tmp_path / "outbox.db"))
        [r] = deliver(first, message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        first.stop(10)
        self.stripped(net, https)
        restarted = mailer(net, ca, storage=SqliteStorage(tmp_path / "outbox.db"))
        [r] = deliver(restarted, message("b@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert r.remote.tls_policy == "sts"
        assert server.handler.messages == []
        elsewhere = mailer(net, ca, storage=SqliteStorage(tmp_path / "new.db"))
        [r] = deliver(elsewhere, message("c@d.test"))
        assert r.result is D

    def test_workers_on_one_postgres_queue_share_the_policies(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA, postgres_dsn: str
    ) -> None:
        """Two mailers on one PostgreSQL database, as on two hosts: the policy
        the first fetched holds for the second, which starts after the record
        was stripped and never reaches the policy host."""
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.smtp("127.0.0.2", starttls_context=self_signed_server_context("mx1.d.test"))
        first = mailer(net, ca, storage=PostgresStorage(postgres_dsn, clock="caller"))
        [r] = deliver(first, message("a@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        self.stripped(net, https)
        fetches = len(https.requests)
        second = mailer(net, ca, storage=PostgresStorage(postgres_dsn, clock="caller"))
        [r] = deliver(second, message("b@d.test"))
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert r.remote is None or r.remote.tls_policy == "sts"
        assert len(https.requests) == fetches

    def test_a_cache_file_is_used_instead_of_the_storage(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA, tmp_path: Path
    ) -> None:
        """``mta_sts_cache`` names where policies go: with it set, the
        storage keeps none."""
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
        storage = SqliteStorage(tmp_path / "outbox.db")
        cache = tmp_path / "mta-sts.json"
        sender = mailer(net, ca, storage=storage, mta_sts_cache=str(cache))
        [r] = deliver(sender, message("a@d.test"))
        assert r.result is D
        assert "d.test" in cache.read_text()
        assert storage.cached_policy("d.test") is None


class TestWaived:
    def test_tls_required_no_delivers_regardless(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """enforce and a self-signed exchanger: a message saying
        ``TLS-Required: No`` is delivered anyway (RFC 8689 §5), and the policy
        is not even fetched for it."""
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        server = net.smtp(
            "127.0.0.2", starttls_context=self_signed_server_context("mx1.d.test")
        )
        [r] = deliver(mailer(net, ca), waived("a@d.test"))
        assert r.result is D
        assert https.requests == []
        assert len(server.handler.messages) == 1

    def test_the_switch_turns_mta_sts_off(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """``DirectConfig(mta_sts=False)``: no policy is looked up, and the
        self-signed exchanger gets the mail over opportunistic TLS."""
        https.replies[PATH] = policy("enforce")
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.smtp("127.0.0.2", starttls_context=self_signed_server_context("mx1.d.test"))
        [r] = deliver(mailer(net, ca, mta_sts=False), message("a@d.test"))
        assert r.result is D and not r.remote.tls_verified
        assert https.requests == []
        assert ("_mta-sts.d.test", "TXT") not in net.dns.queries


class TestConnections:
    def test_a_slow_policy_fetch_holds_none_of_the_destinations_connections(
        self, net: MxNet, https: HttpsServer, ca: trustme.CA
    ) -> None:
        """d.test's policy comes slowly (dripped over about 3 s); e.test, which
        publishes no policy, has the same exchanger, and that destination may
        have one connection at a time. e.test's mail is delivered while
        d.test's policy is still coming: the fetch is made before a connection
        of the destination is taken, not while holding it. d.test's mail goes
        out once its policy has come."""
        body = policy("enforce").body
        https.replies[PATH] = dataclasses.replace(
            policy("enforce"), drip=3.0 / (len(body) + 100)
        )
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.mx("e.test", (10, "mx1.d.test", "127.0.0.2"))
        net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
        one = ShapingConfig(default=DestinationLimits(connections=1), presets=False)
        config = net.config(mta_sts_context=client_context(ca), delivery_threads=2)
        with Mailstrom(
            dataclasses.replace(config, shaping=one), clock=lambda: NOW
        ) as m:
            slow = m.send_email(message("a@d.test"))
            while not https.requests:
                time.sleep(0.01)
            began = time.monotonic()
            fast = m.wait(m.send_email(message("b@e.test")), timeout=10)
            waited = time.monotonic() - began
            assert fast.succeeded
            assert waited < 1.5, f"e.test waited {waited:.1f} s for d.test's fetch"
            assert not m.query_status(slow).completed
            assert m.wait(slow, timeout=10).succeeded
