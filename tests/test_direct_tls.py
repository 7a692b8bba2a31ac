"""Direct delivery end to end: TLS toward exchangers and ESMTP extensions
(matrix rows D3-D7 and F1, F2, F4).

Certificates come from the trustme test CA; exchangers are aiosmtpd or
scripted servers found through the loopback DNS server.
"""

from __future__ import annotations

import ssl

import pytest
import trustme
from support.mxnet import MxNet, message
from support.scripted import Conversation, normal
from support.smtpd import RecordingHandler
from support.tls import client_context, server_context

from mailstrom_py import DeliveryResult, DirectConfig, Mailstrom

D, DF, F = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED, DeliveryResult.FAILED
STARTTLS_LINES = ("PIPELINING", "8BITMIME", "STARTTLS")


@pytest.fixture
def net(net: MxNet) -> MxNet:
    net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
    return net


def send(mailer: Mailstrom, raw: bytes) -> str:
    message_id = mailer.send_email(raw)
    mailer.run_once()
    return message_id


def eight_bit(to: str) -> bytes:
    """A message to ``to`` whose UTF-8 text body is 8-bit as given."""
    return message(to, body="Grüße aus Köln.\r\n").replace(
        b"\r\n\r\n", b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", 1
    )


class TestOpportunisticTls:
    def test_the_default_context_is_explicitly_unverified(self) -> None:
        """Opportunistic TLS uses its own unverified context, never smtplib's default;
        verify_tls asks for a verifying one."""
        context = DirectConfig().tls_context()
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
        verifying = DirectConfig(verify_tls=True).tls_context()
        assert (verifying.verify_mode, verifying.check_hostname) == (
            ssl.CERT_REQUIRED,
            True,
        )

    def test_any_certificate_gives_encryption(self, net: MxNet, ca: trustme.CA) -> None:
        """D6: a certificate for another name still gives (unverified) TLS: delivered,
        with the TLS version recorded and tls_verified False."""
        server = net.smtp(
            "127.0.0.2", starttls_context=server_context(ca, "wrong.test")
        )
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, message("a@d.test"))).recipients
        assert r.result is D
        assert r.remote is not None and r.remote.tls_version is not None
        assert not r.remote.tls_verified
        assert server.handler.messages[0].tls

    def test_a_refused_starttls_goes_on_in_plaintext(self, net: MxNet) -> None:
        """D3: STARTTLS answered 454: the same session goes on without TLS; with TLS
        required the recipient is deferred (4.7.4) and no MAIL is sent."""
        server = net.scripted(
            "127.0.0.2",
            normal(
                ehlo_lines=STARTTLS_LINES,
                on_starttls=lambda conv, line: "454 4.7.0 TLS not available",
            ),
        )
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, message("a@d.test"))).recipients
        assert r.result is D
        assert r.remote is not None and r.remote.tls_version is None
        assert server.connections == 1
        assert server.verbs[:3] == ["EHLO", "STARTTLS", "MAIL"]
        strict = net.mailer(require_tls=True)
        [r] = strict.query_status(send(strict, message("b@d.test"))).recipients
        assert (r.result, r.status_code) == (DF, "4.7.4")
        assert server.verbs.count("MAIL") == 1

    def test_plaintext_injected_after_220_is_ignored(
        self, net: MxNet, ca: trustme.CA
    ) -> None:
        """D4: lines sent in the clear after "220 go ahead" (here a tiny SIZE) are
        dropped; only the EHLO reply under TLS counts."""

        def inject(conv: Conversation, line: str) -> str:
            return "220 2.0.0 go ahead\r\n250-fake.test\r\n250 SIZE 10"

        server = net.scripted(
            "127.0.0.2",
            normal(
                starttls_context=server_context(ca, "mx1.d.test"),
                on_starttls=inject,
            ),
        )
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, message("a@d.test"))).recipients
        assert r.result is D
        assert r.remote is not None and r.remote.tls_version is not None
        assert server.verbs.count("EHLO") == 2
        assert all("SIZE=" not in line for line in server.lines)

    def test_a_failed_handshake_is_retried_in_plaintext(self, net: MxNet) -> None:
        """D5: garbage instead of a TLS handshake: a new connection in plaintext
        delivers, recorded without TLS; with TLS required it is deferred (4.7.5)."""

        def garbage(conv: Conversation, line: str) -> None:
            conv.send("220 2.0.0 go ahead")
            conv.send_raw(b"this is not TLS at all\r\n" * 20)
            conv.close()

        server = net.scripted(
            "127.0.0.2", normal(ehlo_lines=STARTTLS_LINES, on_starttls=garbage)
        )
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, message("a@d.test"))).recipients
        assert r.result is D
        assert r.remote is not None and r.remote.tls_version is None
        assert "in plaintext" in (r.detail or "")
        assert server.connections == 2
        assert len(server.bodies) == 1
        strict = net.mailer(require_tls=True)
        [r] = strict.query_status(send(strict, message("b@d.test"))).recipients
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert len(server.bodies) == 1

    def test_tls_required_no_waives_the_configured_requirement(
        self, net: MxNet
    ) -> None:
        """E7 (direct): with require_tls configured, a message saying
        ``TLS-Required: No`` still goes to an exchanger without STARTTLS."""
        server = net.scripted("127.0.0.2", normal(ehlo_lines=("8BITMIME",)))
        strict = net.mailer(require_tls=True)
        [r] = strict.query_status(send(strict, message("a@d.test"))).recipients
        assert (r.result, r.status_code) == (DF, "4.7.4")
        waived = message("b@d.test").replace(
            b"\r\n\r\n", b"\r\nTLS-Required: No\r\n\r\n", 1
        )
        [r] = strict.query_status(send(strict, waived)).recipients
        assert r.result is D
        assert len(server.bodies) == 1


class TestVerifiedTls:
    def test_the_certificate_is_checked_against_the_mx_name(
        self, net: MxNet, ca: trustme.CA
    ) -> None:
        """D7: a certificate for mx1.d.test served at 127.0.0.2 verifies against the
        MX name: delivered with tls_verified True."""
        net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
        mailer = net.mailer(verify_tls=True, ssl_context=client_context(ca))
        [r] = mailer.query_status(send(mailer, message("a@d.test"))).recipients
        assert r.result is D
        assert r.remote is not None and r.remote.tls_verified
        assert r.remote.host == "mx1.d.test"

    @pytest.mark.parametrize(
        "names",
        [
            pytest.param(("127.0.0.2",), id="ip-only"),
            pytest.param(("other.test",), id="other-name"),
        ],
    )
    def test_a_certificate_not_for_the_mx_name_defers(
        self, net: MxNet, ca: trustme.CA, names: tuple[str, ...]
    ) -> None:
        """D7: a certificate valid only for the IP, or for another name, fails
        verification: deferred (4.7.5), and never retried in plaintext."""
        server = net.smtp("127.0.0.2", starttls_context=server_context(ca, *names))
        mailer = net.mailer(verify_tls=True, ssl_context=client_context(ca))
        [r] = mailer.query_status(send(mailer, message("a@d.test"))).recipients
        assert (r.result, r.status_code) == (DF, "4.7.5")
        assert "MAIL" not in server.handler.commands
        assert server.handler.connections == 1


class TestExtensions:
    def test_an_8bit_message_goes_7bit_by_default(self, net: MxNet) -> None:
        """F1: without allow_8bit an 8-bit body is re-encoded: every octet on the
        wire is ASCII and no BODY= parameter is sent, to a server without 8BITMIME."""
        server = net.smtp(
            "127.0.0.2", handler=RecordingHandler(ehlo_exclude={"8BITMIME"})
        )
        mailer = net.mailer()
        raw = eight_bit("a@d.test")
        [r] = mailer.query_status(send(mailer, raw)).recipients
        assert r.result is D
        [received] = server.handler.messages
        assert received.data.isascii()
        assert not any(o.startswith("BODY=") for o in received.mail_options)

    def test_an_8bit_message_declares_8bitmime(self, net: MxNet) -> None:
        """F1: with allow_8bit the body stays 8-bit and MAIL carries BODY=8BITMIME."""
        server = net.smtp("127.0.0.2")
        mailer = net.mailer(allow_8bit=True)
        raw = eight_bit("a@d.test")
        [r] = mailer.query_status(send(mailer, raw)).recipients
        assert r.result is D
        [received] = server.handler.messages
        assert "BODY=8BITMIME" in received.mail_options
        assert "Grüße".encode() in received.data
        plain = net.mailer(allow_8bit=True)
        send(plain, message("b@d.test"))
        assert not any(
            o.startswith("BODY=") for o in server.handler.messages[1].mail_options
        )

    def test_an_8bit_message_fails_where_8bitmime_is_missing(self, net: MxNet) -> None:
        """F1: an 8-bit body (allow_8bit) at a server without 8BITMIME fails with
        5.6.3 before MAIL (RFC 6152 §3; re-encoding would break a DKIM signature)."""
        server = net.smtp(
            "127.0.0.2", handler=RecordingHandler(ehlo_exclude={"8BITMIME"})
        )
        mailer = net.mailer(allow_8bit=True)
        raw = eight_bit("a@d.test")
        [r] = mailer.query_status(send(mailer, raw)).recipients
        assert (r.result, r.status_code) == (F, "5.6.3")
        assert "MAIL" not in server.handler.commands

    def test_a_utf8_mailbox_uses_smtputf8(self, net: MxNet) -> None:
        """F2: a UTF-8 local part goes out with the SMTPUTF8 parameter."""
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, message("jösé@d.test"))).recipients
        assert r.result is D
        [received] = server.handler.messages
        assert "SMTPUTF8" in received.mail_options
        assert received.rcpt_tos == ("jösé@d.test",)

    def test_a_utf8_mailbox_fails_without_smtputf8(self, net: MxNet) -> None:
        """F2: at a server without SMTPUTF8 it fails with 5.6.7; no MAIL is sent."""
        server = net.smtp("127.0.0.2", enable_smtputf8=False)
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, message("jösé@d.test"))).recipients
        assert (r.result, r.status_code) == (F, "5.6.7")
        assert "MAIL" not in server.handler.commands
        assert mailer.run_once(10**10) == 0  # never retried

    def test_size_is_declared_and_a_known_limit_is_honoured(self, net: MxNet) -> None:
        """F4: MAIL declares SIZE=<octets>; a message over the advertised SIZE fails
        with 5.3.4 without MAIL or DATA."""
        server = net.smtp("127.0.0.2", data_size_limit=2000)
        mailer = net.mailer()
        small = send(mailer, message("a@d.test"))
        big = send(
            mailer, message("b@d.test", body="x" * 70 + "\r\n" * 50 + "y" * 2000)
        )
        [received] = server.handler.messages
        size = len(mailer.storage.email(small).data)
        assert f"SIZE={size}" in received.mail_options
        [r] = mailer.query_status(big).recipients
        assert (r.result, r.status_code) == (F, "5.3.4")
        assert server.handler.commands.count("MAIL") == 1

    def test_552_to_mail_fails_without_data(self, net: MxNet) -> None:
        """F4: a 552 to MAIL from a server offering SIZE fails with 5.3.4; no DATA."""
        server = net.scripted(
            "127.0.0.2",
            normal(
                ehlo_lines=("SIZE",),
                on_mail=lambda conv, line: "552 5.3.4 message too big",
            ),
        )
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, message("a@d.test"))).recipients
        assert (r.result, r.status_code) == (F, "5.3.4")
        assert "DATA" not in server.verbs
