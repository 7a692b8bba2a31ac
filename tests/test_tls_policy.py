"""TLS policy: Config.require_tls, per-message REQUIRETLS, and TLS-Required: No.

Rows D1-D4 and D8 of the reliability matrix as they concern TLS policy, and E6
and E7 (RFC 8689), against real loopback servers with test certificates.
"""

from __future__ import annotations

import dataclasses
import ssl

import pytest
import trustme
from support.scripted import (
    Conversation,
    Hook,
    ScriptedServer,
    ScriptedServerFactory,
    normal,
)
from support.smtpd import SmtpServer, SmtpServerFactory
from support.tls import client_context, self_signed_server_context, server_context

from mailstrom_py import (
    Config,
    DeliveryResult,
    DirectConfig,
    InvalidMessageError,
    Mailstrom,
    PreparedEmail,
    RelayConfig,
    RetryPolicy,
    Timeouts,
)
from mailstrom_py.delivery.routing.dane import TlsaLookup, TlsaRecord
from mailstrom_py.delivery.routing.mta_sts import StsMode, StsOutcome, StsPolicy
from mailstrom_py.delivery.tls_policy import (
    DestinationTls,
    TlsPolicy,
    decide_tls,
    unverified_context,
)
from mailstrom_py.delivery.tls_policy import client_context as tls_client_context

NOW = 1_700_000_000.0


def mailer_for(
    server: SmtpServer | ScriptedServer, *, require_tls: bool = False, **relay: object
) -> Mailstrom:
    relay.setdefault("tls", "none")
    return Mailstrom(
        Config(
            helo_name="client.example.test",
            delivery=RelayConfig(host=server.host, port=server.port, **relay),  # type: ignore[arg-type]
            retry=RetryPolicy(initial_delay=60, jitter=0.0),
            timeouts=Timeouts.uniform(5),
            require_tls=require_tls,
        ),
        clock=lambda: NOW,
    )


def message(extra: str = "") -> bytes:
    return (
        "From: a@example.test\r\nTo: b@example.test\r\nSubject: s\r\n"
        f"{extra}\r\nbody\r\n"
    ).encode()


def ehlo(*, plaintext: tuple[str, ...] = (), tls: tuple[str, ...] = ()) -> Hook:
    """An EHLO reply offering STARTTLS, plus ``plaintext`` before TLS and ``tls``
    after it."""

    def on_ehlo(conv: Conversation, line: str) -> str:
        words = ["scripted.test", "8BITMIME"]
        words += list(tls) if conv.tls else ["STARTTLS", *plaintext]
        return "\r\n".join(
            [f"250-{word}" for word in words[:-1]] + [f"250 {words[-1]}"]
        )

    return on_ehlo


def only_result(mailer: Mailstrom, message_id: str) -> tuple[DeliveryResult, str]:
    [r] = mailer.query_status(message_id).recipients
    assert r.status_code is not None
    return r.result, r.status_code


class TestRequireTlsPerMessage:
    def test_requiretls_goes_on_the_mail_command_when_offered(
        self, ca: trustme.CA, scripted_server: ScriptedServerFactory
    ) -> None:
        """A server offering REQUIRETLS under verified TLS gets MAIL ... REQUIRETLS."""
        handler = normal(
            starttls_context=server_context(ca, "127.0.0.1"),
            on_ehlo=ehlo(tls=("REQUIRETLS",)),
        )
        server = scripted_server(handler)
        mailer = mailer_for(server, tls="starttls", ssl_context=client_context(ca))
        message_id = mailer.send_email(message(), require_tls=True)
        mailer.run_once()
        assert only_result(mailer, message_id) == (
            DeliveryResult.DELIVERED,
            "2.0.0",
        )
        [conv] = server.conversations
        assert conv.tls
        [mail] = [line for line in conv.lines if line.startswith("MAIL")]
        assert mail.split()[-1] == "REQUIRETLS"
        mailer.stop()

    def test_a_server_without_requiretls_fails_the_recipient_with_5_7_30(
        self, ca: trustme.CA
    ) -> None:
        """E6: verified TLS but no REQUIRETLS: failed 5.7.30 at once, never sent, never
        retried."""
        with SmtpServer(starttls_context=server_context(ca, "127.0.0.1")) as server:
            mailer = mailer_for(server, tls="starttls", ssl_context=client_context(ca))
            message_id = mailer.send_email(message(), require_tls=True)
            mailer.run_once(NOW)
            assert only_result(mailer, message_id) == (DeliveryResult.FAILED, "5.7.30")
            assert "MAIL" not in server.handler.commands
            assert mailer.run_once(NOW + 3600) == 0
            mailer.stop()

    def test_a_plaintext_session_fails_requiretls(self) -> None:
        """E6: a relay used without TLS can never carry a REQUIRETLS message."""
        with SmtpServer() as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message(), require_tls=True)
            mailer.run_once()
            assert only_result(mailer, message_id) == (DeliveryResult.FAILED, "5.7.30")
            assert "MAIL" not in server.handler.commands
            mailer.stop()

    def test_an_unverified_certificate_fails_requiretls(
        self, ca: trustme.CA, scripted_server: ScriptedServerFactory
    ) -> None:
        """REQUIRETLS needs a verified certificate; a context that skips checks fails it."""
        handler = normal(
            starttls_context=server_context(ca, "127.0.0.1"),
            on_ehlo=ehlo(tls=("REQUIRETLS",)),
        )
        trusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        trusting.check_hostname = False
        trusting.verify_mode = ssl.CERT_NONE
        server = scripted_server(handler)
        mailer = mailer_for(server, tls="starttls", ssl_context=trusting)
        message_id = mailer.send_email(message(), require_tls=True)
        mailer.run_once()
        assert only_result(mailer, message_id) == (DeliveryResult.FAILED, "5.7.30")
        [r] = mailer.query_status(message_id).recipients
        assert "not verified" in (r.detail or "")
        assert "MAIL" not in server.verbs
        mailer.stop()

    def test_requiretls_offered_before_tls_does_not_count(
        self, ca: trustme.CA, scripted_server: ScriptedServerFactory
    ) -> None:
        """D4: only the EHLO reply under TLS counts; REQUIRETLS offered in plaintext
        (where an attacker could add it) is forgotten after STARTTLS."""
        handler = normal(
            starttls_context=server_context(ca, "127.0.0.1"),
            on_ehlo=ehlo(plaintext=("REQUIRETLS",)),
        )
        server = scripted_server(handler)
        mailer = mailer_for(server, tls="starttls", ssl_context=client_context(ca))
        message_id = mailer.send_email(message(), require_tls=True)
        mailer.run_once()
        assert only_result(mailer, message_id) == (DeliveryResult.FAILED, "5.7.30")
        assert server.verbs.count("EHLO") == 2
        assert "MAIL" not in server.verbs
        mailer.stop()


FAULTS = {
    "D1 untrusted certificate": lambda ca, smtp, scripted: smtp(
        starttls_context=self_signed_server_context("127.0.0.1"),
        auth_users={"app": "secret"},
    ),
    "D2/D8 no STARTTLS, AUTH in plaintext": lambda ca, smtp, scripted: smtp(
        auth_users={"app": "secret"}, auth_require_tls=False
    ),
    "D3 STARTTLS answered 454": lambda ca, smtp, scripted: scripted(
        normal(
            starttls_context=server_context(ca, "127.0.0.1"),
            ehlo_lines=("AUTH PLAIN",),
            on_starttls=lambda conv, line: "454 4.7.0 TLS not available",
        )
    ),
}


class TestBrokenTlsUnderPolicy:
    @pytest.mark.parametrize("fault", sorted(FAULTS))
    @pytest.mark.parametrize("policy", ["config", "message"])
    def test_tls_trouble_defers_and_sends_nothing(
        self,
        ca: trustme.CA,
        smtp_server: SmtpServerFactory,
        scripted_server: ScriptedServerFactory,
        fault: str,
        policy: str,
    ) -> None:
        """D1-D3/D8 with require_tls (config or REQUIRETLS): the relay's TLS trouble
        defers (it may pass); no AUTH and no MAIL reach the server."""
        server = FAULTS[fault](ca, smtp_server, scripted_server)
        mailer = mailer_for(
            server,
            require_tls=policy == "config",
            tls="starttls",
            ssl_context=client_context(ca),
            username="app",
            password="secret",
        )
        message_id = mailer.send_email(message(), require_tls=policy == "message")
        mailer.run_once()
        result, code = only_result(mailer, message_id)
        assert result is DeliveryResult.DEFERRED and code.startswith("4.7.")
        verbs = (
            server.handler.commands if isinstance(server, SmtpServer) else server.verbs
        )
        assert "AUTH" not in verbs and "MAIL" not in verbs
        mailer.stop()


class TestPolicyAndTlsRequiredNo:
    def test_require_tls_defers_mail_for_a_plaintext_relay(self) -> None:
        """Config.require_tls with a relay used without TLS: deferred 4.7.4 and no
        connection is made."""
        with SmtpServer() as server:
            mailer = mailer_for(server, require_tls=True)
            message_id = mailer.send_email(message())
            mailer.run_once()
            assert only_result(mailer, message_id) == (
                DeliveryResult.DEFERRED,
                "4.7.4",
            )
            assert server.handler.connections == 0
            mailer.stop()

    def test_tls_required_no_is_delivered_despite_the_policy(self) -> None:
        """E7: a message saying TLS-Required: No goes out where policy would insist
        on TLS, with the header intact."""
        with SmtpServer() as server:
            mailer = mailer_for(server, require_tls=True)
            message_id = mailer.send_email(message("TLS-Required: No\r\n"))
            assert mailer.storage.email(message_id).tls_optional
            mailer.run_once()
            assert only_result(mailer, message_id) == (
                DeliveryResult.DELIVERED,
                "2.0.0",
            )
            [received] = server.handler.messages
            assert b"\r\nTLS-Required: No\r\n" in received.data
            assert not received.tls
            mailer.stop()

    def test_requiretls_overrides_tls_required_no(self) -> None:
        """RFC 8689: with REQUIRETLS the TLS-Required header is ignored."""
        with SmtpServer() as server:
            mailer = mailer_for(server, require_tls=True)
            message_id = mailer.send_email(
                message("TLS-Required: No\r\n"), require_tls=True
            )
            stored = mailer.storage.email(message_id)
            assert (stored.require_tls, stored.tls_optional) == (True, False)
            mailer.run_once()
            assert only_result(mailer, message_id) == (DeliveryResult.FAILED, "5.7.30")
            mailer.stop()

    @pytest.mark.parametrize(
        "header",
        ["TLS-Required: Yes\r\n", "TLS-Required: No\r\nTLS-Required: No\r\n"],
    )
    def test_a_bad_tls_required_header_is_refused(self, header: str) -> None:
        """Any value but 'No', or the header twice, is refused and nothing is stored."""
        with SmtpServer() as server:
            mailer = mailer_for(server)
            with pytest.raises(InvalidMessageError) as info:
                mailer.send_email(message(header))
            assert info.value.field == "TLS-Required"
            assert mailer.storage.next_due() is None
            mailer.stop()

    @pytest.mark.parametrize("value", ["No", "no", " NO "])
    def test_tls_required_no_is_read_case_insensitively(self, value: str) -> None:
        """The header's value is compared without case or surrounding space."""
        with SmtpServer() as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message(f"TLS-Required:{value}\r\n"))
            assert mailer.storage.email(message_id).tls_optional
            mailer.stop()


def prepared(*, require_tls: bool = False, tls_optional: bool = False) -> PreparedEmail:
    return PreparedEmail(
        "m@example.test",
        "a@example.test",
        ("b@example.test",),
        b"Subject: s\r\n\r\nbody\r\n",
        smtputf8=False,
        eight_bit=False,
        require_tls=require_tls,
        tls_optional=tls_optional,
    )


PLAIN, REQUIRETLS, OPTIONAL = (
    prepared(),
    prepared(require_tls=True),
    prepared(tls_optional=True),
)


class TestOneDecision:
    @pytest.mark.parametrize("email", [None, PLAIN, REQUIRETLS, OPTIONAL])
    @pytest.mark.parametrize("require_tls", [False, True])
    def test_a_relays_sessions_use_tls_as_configured_whatever_the_message(
        self, email: PreparedEmail | None, require_tls: bool
    ) -> None:
        """RelayConfig.tls alone says how the relay's sessions use TLS: a message
        and Config.require_tls only decide whether a message may use them."""
        for tls, mode, implicit in (
            ("starttls", "required", False),
            ("implicit", "required", True),
            ("none", "none", False),
        ):
            relay = RelayConfig(host="127.0.0.1", tls=tls)  # type: ignore[arg-type]
            policy = decide_tls(
                relay, tls_client_context(relay), require_tls=require_tls, email=email
            )
            assert (policy.mode, policy.implicit) == (mode, implicit)
            assert policy.verify is (tls != "none")

    def test_only_a_plaintext_relay_under_require_tls_refuses_mail(self) -> None:
        """Config.require_tls and a relay without TLS refuse a message unless it
        says TLS-Required: No or asks for REQUIRETLS (refused at MAIL instead)."""
        relay = RelayConfig(host="127.0.0.1", port=2525, tls="none")
        refusals = {
            name: decide_tls(relay, None, require_tls=True, email=email).refusal
            for name, email in (
                ("default", None),
                ("plain", PLAIN),
                ("optional", OPTIONAL),
                ("requiretls", REQUIRETLS),
            )
        }
        refusal = "TLS is required and the relay 127.0.0.1:2525 is used without it"
        assert refusals == {
            "default": refusal,
            "plain": refusal,
            "optional": None,
            "requiretls": None,
        }
        assert decide_tls(relay, None, email=PLAIN).refusal is None
        starttls = RelayConfig(host="127.0.0.1")
        context = tls_client_context(starttls)
        assert decide_tls(starttls, context, require_tls=True).refusal is None

    @pytest.mark.parametrize(
        ("verify_tls", "require_tls", "email", "mode", "source"),
        [
            (False, False, PLAIN, "opportunistic", "opportunistic TLS (RFC 7435)"),
            (False, False, OPTIONAL, "opportunistic", "opportunistic TLS (RFC 7435)"),
            (False, True, PLAIN, "required", "Config.require_tls"),
            (True, False, PLAIN, "required", "DirectConfig.verify_tls"),
            (True, True, OPTIONAL, "opportunistic", "TLS-Required: No (RFC 8689)"),
            (False, False, REQUIRETLS, "required", "REQUIRETLS (RFC 8689)"),
        ],
    )
    def test_tls_toward_exchangers_is_opportunistic_unless_required(
        self,
        verify_tls: bool,
        require_tls: bool,
        email: PreparedEmail,
        mode: str,
        source: str,
    ) -> None:
        """verify_tls, require_tls and REQUIRETLS each require TLS toward an
        exchanger; TLS-Required: No waives the first two."""
        direct = DirectConfig(nameservers=("127.0.0.1",), verify_tls=verify_tls)
        policy = decide_tls(
            direct, tls_client_context(direct), require_tls=require_tls, email=email
        )
        assert (policy.mode, policy.source, policy.refusal) == (mode, source, None)
        assert policy.verify is verify_tls

    @pytest.mark.parametrize(
        ("published", "require_tls", "email", "expected"),
        [
            ("enforce", False, PLAIN, ("required", True, "sts", None)),
            ("testing", False, PLAIN, ("opportunistic", True, "sts", "opportunistic")),
            ("testing", True, PLAIN, ("required", True, "sts", "required")),
            ("dane", False, PLAIN, ("required", True, "tlsa", None)),
            ("dane-unusable", False, PLAIN, ("required", False, "tlsa", None)),
            ("dane+enforce", False, PLAIN, ("required", True, "tlsa", None)),
            ("insecure+enforce", False, PLAIN, ("required", True, "sts", None)),
            ("none", True, PLAIN, ("required", False, "no-policy-found", None)),
            ("enforce", True, OPTIONAL, ("opportunistic", False, "no-policy-found", None)),
            ("dane", False, OPTIONAL, ("opportunistic", False, "no-policy-found", None)),
            ("dane", False, REQUIRETLS, ("required", True, "tlsa", None)),
        ],
    )  # fmt: skip
    def test_published_policies_go_through_the_one_decision(
        self,
        published: str,
        require_tls: bool,
        email: PreparedEmail,
        expected: tuple[str, bool, str, str | None],
    ) -> None:
        """DANE records (authenticated) outrank MTA-STS; enforce requires
        verified TLS; testing tries verified TLS and falls back to what the
        configuration gives; TLS-Required: No waives every published policy
        (and Config.require_tls), REQUIRETLS none. The policy domain is the
        recipient domain, or for DANE the TLSA base domain."""
        direct = DirectConfig(nameservers=("127.0.0.1",))
        sts_policy = {
            "enforce": StsPolicy(StsMode.ENFORCE, ("mx.d.test",), 86400),
            "testing": StsPolicy(StsMode.TESTING, ("mx.d.test",), 86400),
        }.get(published.rpartition("+")[2])
        record = TlsaRecord(3, 1, 1, bytes(32))
        tlsa = {
            "dane": TlsaLookup("mx.d.test", "usable", (record,)),
            "dane-unusable": TlsaLookup(
                "mx.d.test", "unusable", (TlsaRecord(1, 1, 1, bytes(32)),)
            ),
            "insecure": TlsaLookup("mx.d.test", "insecure", (record,)),
        }.get(published.partition("+")[0])
        sts = (
            StsOutcome("d.test", "fetched", sts_policy, "1")
            if sts_policy is not None
            else None
        )
        destination = DestinationTls(
            "d.test",
            mta_sts=sts,
            dane=tlsa,
            authenticated=ssl.create_default_context(),
            unverified=unverified_context(),
        )
        policy = decide_tls(
            direct,
            tls_client_context(direct),
            require_tls=require_tls,
            email=email,
            destination=destination,
        )
        mode, verify, policy_type, fallback = expected
        assert (policy.mode, policy.verify, policy.policy_type) == (
            mode,
            verify,
            policy_type,
        )
        # RFC 8460 §3: DANE's policy domain is the TLSA base domain.
        domain = "mx.d.test" if policy_type == "tlsa" else "d.test"
        assert policy.policy_domain == domain
        second = policy.after_failed_handshake()
        if fallback is not None:
            assert second is not None and (second.mode, second.verify) == (
                fallback,
                False,
            )
        assert bool(policy.dane) is (policy_type == "tlsa" and verify)

    @pytest.mark.parametrize(
        ("usages", "base", "expanded", "names"),
        [
            ((2, 3), "h.p.test", "", ("h.p.test", "mx.d.test", "d.test")),
            ((2,), "", "", ("mx.d.test", "d.test")),
            ((3,), "h.p.test", "", ()),
            ((2,), "", "real.test", ("mx.d.test", "d.test", "real.test")),
            ((3,), "", "real.test", ()),
        ],
    )
    def test_dane_ta_records_bring_their_reference_identifiers(
        self,
        usages: tuple[int, ...],
        base: str,
        expanded: str,
        names: tuple[str, ...],
    ) -> None:
        """With a usable DANE-TA record the policy carries the names its leaf
        may carry (RFC 7672 §3.2.2): the TLSA base domain, the MX host name,
        the recipient domain and, when that is an alias, its expanded name,
        each once; with DANE-EE records alone, none (no name is checked, so
        sessions stay shared between domains)."""
        records = tuple(TlsaRecord(usage, 1, 1, bytes(32)) for usage in usages)
        destination = DestinationTls(
            "d.test",
            dane=TlsaLookup("mx.d.test", "usable", records, base=base),
            expanded_domain=expanded,
            unverified=unverified_context(),
        )
        direct = DirectConfig(nameservers=("127.0.0.1",))
        context = tls_client_context(direct)
        policy = decide_tls(direct, context, destination=destination)
        assert (policy.policy_type, policy.dane, policy.dane_names) == (
            "tlsa",
            records,
            names,
        )
        with pytest.raises(ValueError, match="reference identifiers"):
            dataclasses.replace(policy, dane=(), verify=False, dane_names=("a",))

    def test_only_opportunistic_tls_is_tried_again_in_plaintext(self) -> None:
        """After a failed handshake opportunistic TLS allows a plaintext session;
        required TLS allows none."""
        context = ssl.create_default_context()
        opportunistic = TlsPolicy("opportunistic", context=context)
        assert opportunistic.after_failed_handshake() == TlsPolicy("none")
        assert TlsPolicy("required", context=context).after_failed_handshake() is None
        assert TlsPolicy("none").after_failed_handshake() is None

    def test_policies_that_differ_only_in_their_source_share_sessions(self) -> None:
        """The source explains a policy; it takes no part in equality, so a kept
        session serves a message whatever required its TLS."""
        context = ssl.create_default_context()
        by_config = TlsPolicy("required", context=context, source="Config.require_tls")
        by_message = TlsPolicy("required", context=context, source="REQUIRETLS")
        assert by_config == by_message and hash(by_config) == hash(by_message)
        assert by_config != TlsPolicy("opportunistic", context=context)

    @pytest.mark.parametrize(
        ("fields", "error"),
        [
            ({"mode": "required"}, "client context"),
            ({"mode": "none", "context": True}, "client context"),
            ({"mode": "opportunistic", "implicit": True, "context": True}, "implicit"),
            ({"mode": "none", "verify": True}, "nothing to verify"),
            ({"mode": "sometimes", "context": True}, "unknown TLS mode"),
        ],
    )
    def test_a_contradictory_policy_is_refused(
        self, fields: dict[str, object], error: str
    ) -> None:
        """TLS without a context, a context without TLS, implicit TLS that is not
        required, or an unknown mode, is a ValueError."""
        if fields.pop("context", False):
            fields["context"] = ssl.create_default_context()
        with pytest.raises(ValueError, match=error):
            TlsPolicy(**fields)  # type: ignore[arg-type]
