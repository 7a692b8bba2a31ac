"""DKIM: keys checked at configuration, messages signed once, verified at the receiver.

Signatures are checked where a receiver checks them: on the bytes the loopback
aiosmtpd server received, with dkimpy's verifier fed the TXT records the library
prints for publishing (no DNS). Rows G1-G6 of the reliability matrix.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from support.dkimverify import Published, signature_tags, verify_all
from support.smtpd import RecordingHandler, SmtpServer
from support.tls import client_context, server_context

from mailstrom_py import (
    Config,
    ConfigError,
    DkimConfig,
    Mailstrom,
    RelayConfig,
    RetryPolicy,
    Timeouts,
    prepare_email,
)
from mailstrom_py.message.dkim import (
    DkimSigner,
    generate_key,
    txt_name,
    txt_record,
    txt_value,
    write_key,
)

NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def rsa_key() -> DkimConfig:
    return generate_key("example.test", "rsa2026")


@pytest.fixture(scope="module")
def ed_key() -> DkimConfig:
    return generate_key("example.test", "ed2026", "ed25519-sha256")


@pytest.fixture(scope="module")
def both_keys(rsa_key: DkimConfig, ed_key: DkimConfig) -> list[DkimConfig]:
    return [rsa_key, ed_key]


@pytest.fixture(scope="module")
def dns(rsa_key: DkimConfig, ed_key: DkimConfig) -> Published:
    return Published(txt_record(rsa_key), txt_record(ed_key))


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


def mailer_for(
    server: SmtpServer, keys: list[DkimConfig], **config: object
) -> Mailstrom:
    return Mailstrom(
        Config(
            helo_name="client.example.test",
            delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
            retry=RetryPolicy(initial_delay=60, jitter=0.0),
            timeouts=Timeouts.uniform(5),
            dkim=keys,
            **config,  # type: ignore[arg-type]
        ),
        clock=lambda: NOW,
    )


def raw_message(body: str, sender: str = "app@example.test") -> bytes:
    return (
        f"From: App <{sender}>\r\nTo: rcpt@example.test\r\nSubject: signed\r\n\r\n"
        + body
    ).encode()


def unicode_message() -> bytes:
    return (
        "From: =?utf-8?q?Zo=C3=AB?= <app@example.test>\r\n"
        "To: rcpt@example.test\r\n"
        "Subject: =?utf-8?b?R3LDvMOfZSwg5L2g5aW9?=\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Grüße aus Köln, 你好.\r\n.leading dot\r\n" + "ü" * 300 + "\r\n"
    ).encode()


def weak_rsa_pem(bits: int = 512) -> bytes:
    """An RSA key too short to sign with (cryptography refuses to generate one)."""

    def probable_prime(size: int) -> int:
        while True:
            n = secrets.randbits(size) | (3 << (size - 2)) | 1
            if pow(2, n - 1, n) == 1 and pow(3, n - 1, n) == 1 and (n - 1) % 65537:
                return n

    p, q = probable_prime(bits // 2), probable_prime(bits // 2)
    d = pow(65537, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
        rsa.RSAPublicNumbers(65537, p * q),
    )  # fmt: skip
    return numbers.private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def deliver(mailer: Mailstrom, message: bytes) -> str:
    message_id = mailer.send_email(message)
    assert mailer.run_once() == 1
    assert mailer.query_status(message_id).succeeded
    return message_id


BODIES = {
    "leading dots": ".\r\n..two\r\n.three\r\nend\r\n",
    "long line": "x" * 3000 + "\r\n",
    "plain": "Hello.\r\n",
}


UNSUBSCRIBE_MESSAGE = (
    b"From: News <news@example.test>\r\n"
    b"To: rcpt@example.test\r\n"
    b"Subject: this week\r\n"
    b"List-Unsubscribe: <https://example.test/u/7f3a>, <mailto:u+7f3a@example.test>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"News.\r\n"
)


class TestSignedDelivery:
    @pytest.mark.parametrize("algorithm", ["rsa", "ed25519", "both"])
    @pytest.mark.parametrize("body", sorted(BODIES))
    def test_signatures_verify_at_the_receiver(
        self,
        server: SmtpServer,
        both_keys: list[DkimConfig],
        dns: Published,
        algorithm: str,
        body: str,
    ) -> None:
        """G1/G5: what the server received verifies, one signature per key."""
        rsa_key, ed_key = both_keys
        keys = {"rsa": [rsa_key], "ed25519": [ed_key], "both": both_keys}
        mailer = mailer_for(server, keys[algorithm])
        deliver(mailer, raw_message(BODIES[body]))
        [received] = server.handler.messages
        assert verify_all(received.data, dns) == [True] * len(keys[algorithm])
        mailer.stop()

    @pytest.mark.parametrize("allow_8bit", [False, True])
    def test_non_ascii_text_verifies(
        self,
        server: SmtpServer,
        rsa_key: DkimConfig,
        ed_key: DkimConfig,
        dns: Published,
        allow_8bit: bool,
    ) -> None:
        """G1: UTF-8 headers and body, re-encoded or sent 8-bit, still verify."""
        mailer = mailer_for(server, [rsa_key, ed_key], allow_8bit=allow_8bit)
        deliver(mailer, unicode_message())
        [received] = server.handler.messages
        assert received.data.isascii() is not allow_8bit
        assert verify_all(received.data, dns) == [True, True]
        mailer.stop()

    def test_rsa_and_ed25519_sign_side_by_side(
        self,
        server: SmtpServer,
        rsa_key: DkimConfig,
        ed_key: DkimConfig,
        dns: Published,
    ) -> None:
        """G5: two DKIM-Signature headers, one per algorithm, each looked up."""
        mailer = mailer_for(server, [rsa_key, ed_key])
        deliver(mailer, raw_message("Hello.\r\n"))
        [received] = server.handler.messages
        tags = signature_tags(received.data)
        assert [(t["a"], t["s"], t["d"]) for t in tags] == [
            ("rsa-sha256", "rsa2026", "example.test"),
            ("ed25519-sha256", "ed2026", "example.test"),
        ]
        verify_all(received.data, dns)
        assert sorted(set(dns.lookups)) == [txt_name(ed_key), txt_name(rsa_key)]
        mailer.stop()

    def test_signatures_are_relaxed_oversign_from_and_have_no_length(
        self, server: SmtpServer, rsa_key: DkimConfig, ed_key: DkimConfig
    ) -> None:
        """c=relaxed/relaxed; From is listed twice in h=; never an l= tag."""
        mailer = mailer_for(server, [rsa_key, ed_key])
        deliver(mailer, raw_message("Hello.\r\n"))
        for tags in signature_tags(server.handler.messages[0].data):
            assert tags["c"] == "relaxed/relaxed"
            assert tags["h"].split(":").count("from") == 2
            assert "l" not in tags
        mailer.stop()

    def test_one_click_unsubscribe_headers_are_signed(
        self,
        server: SmtpServer,
        rsa_key: DkimConfig,
        ed_key: DkimConfig,
        dns: Published,
    ) -> None:
        """RFC 8058 §4: List-Unsubscribe and List-Unsubscribe-Post are in h= of
        every signature (over-signed), which verifies; changing or adding either
        breaks it."""
        mailer = mailer_for(server, [rsa_key, ed_key])
        deliver(mailer, UNSUBSCRIBE_MESSAGE)
        data = server.handler.messages[0].data
        for tags in signature_tags(data):
            signed = tags["h"].lower().split(":")
            assert signed.count("list-unsubscribe") == 2
            assert signed.count("list-unsubscribe-post") == 2
        assert verify_all(data, dns) == [True, True]
        changed = data.replace(b"=One-Click", b"=Two-Clicks")
        added = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" + data
        assert verify_all(changed, dns) == [False, False]
        assert verify_all(added, dns) == [False, False]
        mailer.stop()

    def test_a_second_from_breaks_every_signature(
        self,
        server: SmtpServer,
        rsa_key: DkimConfig,
        ed_key: DkimConfig,
        dns: Published,
    ) -> None:
        """G2: a From prepended in transit fails verification (From is over-signed)."""
        mailer = mailer_for(server, [rsa_key, ed_key])
        deliver(mailer, raw_message("Hello.\r\n"))
        data = server.handler.messages[0].data
        forged = b"From: Boss <boss@example.test>\r\n" + data
        assert verify_all(forged, dns) == [False, False]
        mailer.stop()

    @pytest.mark.parametrize(
        "tamper",
        [
            lambda data: data + b"Click here.\r\n",
            lambda data: data.replace(b"Hello.", b"Hullo."),
            lambda data: data.replace(b"From: App", b"From: Bob"),
        ],
        ids=["appended", "changed body", "changed From"],
    )
    def test_tampering_breaks_every_signature(
        self,
        server: SmtpServer,
        rsa_key: DkimConfig,
        ed_key: DkimConfig,
        dns: Published,
        tamper: object,
    ) -> None:
        """G3: appended or changed body text, or a changed From, fails verification."""
        mailer = mailer_for(server, [rsa_key, ed_key])
        deliver(mailer, raw_message("Hello.\r\n"))
        data = server.handler.messages[0].data
        assert verify_all(data, dns) == [True, True]
        assert verify_all(tamper(data), dns) == [False, False]  # type: ignore[operator]
        mailer.stop()

    def test_a_retry_sends_the_same_signed_bytes(
        self, rsa_key: DkimConfig, dns: Published
    ) -> None:
        """Signed once at send_email(): the retry after a 451 sends identical bytes."""
        handler = RecordingHandler(data_reply="451 4.3.0 try again")
        with SmtpServer(handler=handler) as server:
            mailer = mailer_for(server, [rsa_key])
            message_id = mailer.send_email(raw_message("Hello.\r\n"))
            stored = mailer.storage.email(message_id).data
            assert stored.startswith(b"DKIM-Signature:")
            mailer.run_once(NOW)
            handler.data_reply = None
            mailer.run_once(NOW + 60)
            assert mailer.query_status(message_id).succeeded
            [first], [second] = handler.rejected, handler.messages
            assert first.data == second.data == stored
            assert verify_all(second.data, dns) == [True]
            mailer.stop()


class TestSignerChoice:
    def test_a_domain_without_a_key_goes_out_unsigned_with_one_warning(
        self,
        server: SmtpServer,
        rsa_key: DkimConfig,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Mail from a domain with no key is sent unsigned; the first is logged."""
        mailer = mailer_for(server, [rsa_key])
        with caplog.at_level(logging.WARNING, logger="mailstrom_py.message.dkim"):
            for _ in range(2):
                mailer.send_email(raw_message("Hi.\r\n", sender="app@other.test"))
        mailer.run_once()
        assert [m.data.startswith(b"DKIM") for m in server.handler.messages] == [
            False,
            False,
        ]
        warnings = [r for r in caplog.records if "other.test" in r.getMessage()]
        assert len(warnings) == 1 and "unsigned" in warnings[0].getMessage()
        mailer.stop()

    @pytest.mark.parametrize(
        ("sender", "domain"),
        [
            ("a@example.test", "example.test"),
            ("a@mail.example.test", "example.test"),
            ("a@news.example.test", "news.example.test"),
            ("a@EXAMPLE.TEST", "example.test"),
            ("a@other.test", None),
            ("a@notexample.test", None),
        ],
    )
    def test_keys_are_chosen_by_from_domain_or_nearest_parent(
        self, sender: str, domain: str | None
    ) -> None:
        """A domain's own key signs; else its nearest parent's; else nothing."""
        parent = generate_key("example.test", "p", "ed25519-sha256")
        child = generate_key("news.example.test", "c", "ed25519-sha256")
        signer = DkimSigner([parent, child])
        email = prepare_email(raw_message("x\r\n", sender), helo_name="h.test")
        tags = signature_tags(signer.sign(email).data)
        assert [t["d"] for t in tags] == ([domain] if domain else [])


class TestDkimConfig:
    def test_a_short_rsa_key_is_refused(self) -> None:
        """G4: a 512-bit RSA key is a ConfigError when the config is built."""
        with pytest.raises(ConfigError, match="512-bit"):
            DkimConfig("example.test", "s", weak_rsa_pem(512))

    def test_rsa_sha1_is_refused(self, rsa_key: DkimConfig) -> None:
        """G4: rsa-sha1 is refused (RFC 8301), as is an unknown algorithm."""
        with pytest.raises(ConfigError, match="RFC 8301"):
            DkimConfig("example.test", "s", rsa_key.private_key, "rsa-sha1")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="ed25519-sha256"):
            DkimConfig("example.test", "s", rsa_key.private_key, "dsa")  # type: ignore[arg-type]

    def test_the_key_must_fit_the_algorithm(
        self, rsa_key: DkimConfig, ed_key: DkimConfig
    ) -> None:
        """An RSA key for Ed25519, or the other way round, is a ConfigError."""
        with pytest.raises(ConfigError, match="Ed25519 key"):
            DkimConfig("example.test", "s", rsa_key.private_key, "ed25519-sha256")
        with pytest.raises(ConfigError, match="RSA key"):
            DkimConfig("example.test", "s", ed_key.private_key, "rsa-sha256")

    def test_unusable_keys_are_refused_without_showing_them(
        self, rsa_key: DkimConfig, ed_key: DkimConfig, tmp_path: Path
    ) -> None:
        """Missing file, garbage, encrypted PEM, PEM as str, a base64 seed as a path:
        each is a ConfigError whose message and chain quote no key material."""
        assert isinstance(rsa_key.private_key, bytes)
        pem = rsa_key.private_key
        encrypted = rsa_key.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
        assert isinstance(ed_key.key, ed25519.Ed25519PrivateKey)
        seed = base64.b64encode(
            ed_key.key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        ).decode()
        body = pem.decode().splitlines()[1]
        cases: list[tuple[object, str]] = [
            (str(tmp_path / "missing.pem"), "cannot read"),
            (b"-----BEGIN PRIVATE KEY-----\n" + body.encode() + b"\n", "not a PEM"),
            (encrypted, "encrypted"),
            (pem.decode(), "a str is a file path"),
            (seed, "cannot read"),
        ]
        for source, reason in cases:
            with pytest.raises(ConfigError, match=reason) as info:
                DkimConfig("example.test", "s", source)  # type: ignore[arg-type]
            shown = str(info.value) + repr(info.value.__cause__)
            assert body not in shown and seed not in shown
            assert info.value.__cause__ is None
            assert info.value.__context__ is None or info.value.__suppress_context__

    def test_repr_never_shows_the_key(self, rsa_key: DkimConfig) -> None:
        """repr() of a key, a Config holding it, and a signer shows no key material."""
        assert isinstance(rsa_key.private_key, bytes)
        body = rsa_key.private_key.decode().splitlines()[1]
        config = Config(
            helo_name="a.example.test",
            delivery=RelayConfig(host="relay.example.test"),
            dkim=rsa_key,
        )
        for text in (repr(rsa_key), repr(config), repr(DkimSigner([rsa_key]))):
            assert body not in text and "PRIVATE" not in text

    def test_a_key_file_is_read_and_a_loose_mode_is_logged(
        self, rsa_key: DkimConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A path is read at construction; a group-readable file is warned about."""
        path = tmp_path / "key.pem"
        write_key(rsa_key, path)
        assert DkimConfig("example.test", "s", str(path)).key.key_size == 2048  # type: ignore[union-attr]
        assert not caplog.records
        os.chmod(path, 0o640)
        with caplog.at_level(logging.WARNING):
            DkimConfig("example.test", "s", path)
        assert "chmod 600" in caplog.text

    def test_missing_pynacl_is_a_clear_config_error(
        self, rsa_key: DkimConfig, ed_key: DkimConfig, tmp_path: Path
    ) -> None:
        """G5: without PyNaCl an Ed25519 key is refused at config time, by name;
        RSA keys still work."""
        write_key(ed_key, tmp_path / "ed.pem")
        write_key(rsa_key, tmp_path / "rsa.pem")
        script = (
            "import sys\n"
            "sys.modules['nacl'] = None  # as if PyNaCl were not installed\n"
            "from mailstrom_py import ConfigError, DkimConfig\n"
            "try:\n"
            "    DkimConfig('example.test', 's', 'ed.pem', 'ed25519-sha256')\n"
            "except ConfigError as exc:\n"
            "    print(exc.args[0])\n"
            "print(DkimConfig('example.test', 's', 'rsa.pem').key.key_size)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "ed25519-sha256 signing needs PyNaCl, which is not installed "
            "(pip install pynacl)",
            "2048",
        ]

    def test_config_takes_one_key_or_several(
        self, rsa_key: DkimConfig, ed_key: DkimConfig
    ) -> None:
        """dkim= takes a DkimConfig or a list; two keys for one selector are refused."""

        def config(dkim: object) -> Config:
            return Config(
                helo_name="a.example.test",
                delivery=RelayConfig(host="relay.example.test"),
                dkim=dkim,  # type: ignore[arg-type]
            )

        assert config(rsa_key).dkim_keys == (rsa_key,)
        assert config([rsa_key, ed_key]).dkim_keys == (rsa_key, ed_key)
        assert config(()).dkim_keys == ()
        with pytest.raises(ConfigError, match="selector"):
            config([rsa_key, rsa_key])
        with pytest.raises(ConfigError, match="DkimConfig"):
            config("key.pem")

    @pytest.mark.parametrize(
        ("domain", "selector"),
        [("", "s"), ("bad domain", "s"), ("example.test", "bad_selector")],
    )
    def test_domain_and_selector_must_be_dns_names(
        self, rsa_key: DkimConfig, domain: str, selector: str
    ) -> None:
        """d= and s= must be DNS names."""
        with pytest.raises(ConfigError):
            DkimConfig(domain, selector, rsa_key.private_key)


class TestKeysAndRecords:
    def test_rsa_record_is_split_into_255_octet_strings(
        self, rsa_key: DkimConfig
    ) -> None:
        """A 2048-bit key's record is split so each TXT string fits 255 octets."""
        record = txt_record(rsa_key)
        assert record.startswith('rsa2026._domainkey.example.test IN TXT "v=DKIM1;')
        strings = record.split(" IN TXT ")[1].split('" "')
        assert len(strings) == 2 and all(len(s.strip('"')) <= 255 for s in strings)
        assert "".join(s.strip('"') for s in strings) == txt_value(rsa_key)

    def test_ed25519_record_is_the_raw_public_key(self, ed_key: DkimConfig) -> None:
        """RFC 8463: k=ed25519 and p= is the 32-octet raw public key in base64."""
        value = txt_value(ed_key)
        assert value.startswith("v=DKIM1; k=ed25519; p=")
        raw = base64.b64decode(value.split("p=")[1])
        assert isinstance(ed_key.key, ed25519.Ed25519PrivateKey)
        assert raw == ed_key.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def test_write_key_makes_a_private_file_and_never_overwrites(
        self, ed_key: DkimConfig, tmp_path: Path
    ) -> None:
        """The key file is mode 0600; an existing file is left alone."""
        path = tmp_path / "key.pem"
        write_key(ed_key, path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        before = path.read_bytes()
        with pytest.raises(FileExistsError):
            write_key(generate_key("example.test", "x", "ed25519-sha256"), path)
        assert path.read_bytes() == before

    def test_generate_refuses_a_short_rsa_key(self) -> None:
        """generate_key() will not make an RSA key under 1024 bits."""
        with pytest.raises(ConfigError):
            generate_key("example.test", "s", bits=512)

    @pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
    def test_the_keygen_command_writes_a_key_and_prints_its_record(
        self, server: SmtpServer, tmp_path: Path, algorithm: str
    ) -> None:
        """`mailstrom-py dkim-keygen` writes a 0600 key whose printed record verifies
        the mail it signs; run again, it refuses to overwrite the key."""
        path = tmp_path / "dkim.pem"
        command = [
            sys.executable, "-m", "mailstrom_py", "dkim-keygen",
            "--domain", "example.test", "--selector", "cli",
            "--algorithm", algorithm, "--out", str(path),
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        [record] = done.stdout.splitlines()
        assert record.startswith("cli._domainkey.example.test IN TXT")
        key = DkimConfig("example.test", "cli", str(path), algorithm)  # type: ignore[arg-type]
        mailer = mailer_for(server, [key])
        deliver(mailer, raw_message("Hello.\r\n"))
        assert verify_all(server.handler.messages[0].data, Published(record)) == [True]
        mailer.stop()
        again = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False
        )
        assert again.returncode == 1 and "exists" in again.stderr


class TestSecrets:
    def test_no_key_password_or_auth_token_reaches_logs_or_stderr(
        self,
        ca: trustme.CA,
        both_keys: list[DkimConfig],
        dns: Published,
        caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """G6: a signed, authenticated delivery logged at DEBUG shows no key bytes,
        no password and no AUTH token, in the log records or on stderr."""
        rsa_key, ed_key = both_keys
        password = "pw-" + secrets.token_hex(8)
        # The test server's own protocol trace is not the library's output.
        caplog.set_level(logging.WARNING, logger="mail.log")
        caplog.set_level(logging.DEBUG)  # last: it sets the capturing handler's level
        with SmtpServer(
            starttls_context=server_context(ca, "127.0.0.1"),
            auth_users={"app": password},
        ) as server:
            config = Config(
                helo_name="client.example.test",
                delivery=RelayConfig(
                    host=server.host,
                    port=server.port,
                    ssl_context=client_context(ca),
                    username="app",
                    password=password,
                ),
                timeouts=Timeouts.uniform(5),
                dkim=[rsa_key, ed_key],
                dsn=True,
            )
            mailer = Mailstrom(config, clock=lambda: NOW)
            logging.getLogger("test").debug("config: %r", config)
            deliver(mailer, raw_message("Hello.\r\n"))
            mailer.stop()
            [received] = server.handler.messages
            assert received.auth_login == "app"
            assert verify_all(received.data, dns) == [True, True]
        secrets_seen = [password, base64.b64encode(f"\0app\0{password}".encode())]
        secrets_seen.append(base64.b64encode(password.encode()))
        for key in (rsa_key, ed_key):
            assert isinstance(key.private_key, bytes)
            secrets_seen += key.private_key.decode().splitlines()[1:-1]
        secrets_seen += _signing_forms(rsa_key, ed_key)
        logged = "\n".join(
            record.getMessage() + repr(record.args) for record in caplog.records
        )
        assert logged  # the delivery was logged at DEBUG/INFO
        stderr = capfd.readouterr().err
        for secret in secrets_seen:
            text = secret.decode() if isinstance(secret, bytes) else secret
            assert text not in logged and text not in stderr


def _signing_forms(rsa_key: DkimConfig, ed_key: DkimConfig) -> list[str]:
    """The key material in the forms dkimpy is handed: PKCS#1 lines, raw seed."""
    assert isinstance(rsa_key.key, rsa.RSAPrivateKey)
    assert isinstance(ed_key.key, ed25519.Ed25519PrivateKey)
    pkcs1 = rsa_key.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    seed = ed_key.key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return [*pkcs1.decode().splitlines()[1:-1], base64.b64encode(seed).decode()]
