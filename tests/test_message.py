"""prepare_email(): from a caller's message to the envelope and the bytes to send."""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.smtpd import SmtpServer, SmtpServerFactory

from mailstrom_py import (
    Config,
    Mailstrom,
    MemoryStorage,
    QueueFilter,
    RelayConfig,
    Timeouts,
)
from mailstrom_py.errors import InvalidMessageError
from mailstrom_py.message import PreparedEmail, prepare_email, validate_address

HELO = "mx.example.org"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
HEADERS = ("From: Alice <alice@example.org>", "To: bob@example.org", "Subject: Hi")


def raw(*headers: str, body: str | bytes = "Hello.\r\n") -> bytes:
    """Build message bytes from header lines and a body, with CRLF header lines."""
    encoded = body if isinstance(body, bytes) else body.encode()
    return "".join(f"{header}\r\n" for header in headers).encode() + b"\r\n" + encoded


def prepare(message: Message | bytes | str, **kwargs: object) -> PreparedEmail:
    kwargs.setdefault("helo_name", HELO)
    kwargs.setdefault("now", NOW)
    return prepare_email(message, **kwargs)  # type: ignore[arg-type]


def reparse(data: bytes) -> EmailMessage:
    parsed: EmailMessage = BytesParser(policy=policy.default).parsebytes(data)
    return parsed


def body_of(data: bytes) -> bytes:
    return data.partition(b"\r\n\r\n")[2]


def assert_wire_safe(data: bytes, *, ascii_only: bool = True) -> None:
    """The promises of PreparedEmail.data: CRLF only, short lines, ends with CRLF."""
    assert data.endswith(b"\r\n")
    without_crlf = data.replace(b"\r\n", b"")
    assert b"\r" not in without_crlf
    assert b"\n" not in without_crlf
    assert all(len(line) + 2 <= 1000 for line in data.split(b"\r\n"))
    if ascii_only:
        assert data.isascii()


def lines(text: str) -> str:
    """Normalise line ends to LF, as a receiving MUA would see them."""
    return re.sub(r"\r\n|\r", "\n", text)


def expect_error(field: str | None) -> pytest.RaisesExc[InvalidMessageError]:
    return pytest.raises(InvalidMessageError, check=lambda exc: exc.field == field)


class TestEnvelopeSender:
    def test_single_from_address_is_the_sender(self) -> None:
        """With neither mail_from nor Sender, the From mailbox is the sender."""
        assert prepare(raw(*HEADERS)).mail_from == "alice@example.org"

    def test_sender_header_wins_over_from(self) -> None:
        """A Sender header names the envelope sender."""
        message = raw(*HEADERS, "Sender: Bounces <bounce@example.org>")
        assert prepare(message).mail_from == "bounce@example.org"

    def test_explicit_mail_from_wins_over_headers(self) -> None:
        """An explicit mail_from overrides Sender and From."""
        message = raw(*HEADERS, "Sender: bounce@example.org")
        prepared = prepare(message, mail_from="envelope@example.net")
        assert prepared.mail_from == "envelope@example.net"

    def test_several_from_mailboxes_need_a_sender(self) -> None:
        """From with two mailboxes and no Sender is refused (RFC 5322 §3.6.2)."""
        message = raw("From: a@example.org, b@example.org", "To: bob@example.org")
        with expect_error("From"):
            prepare(message)
        with_sender = raw(
            "From: a@example.org, b@example.org",
            "Sender: b@example.org",
            "To: bob@example.org",
        )
        assert prepare(with_sender).mail_from == "b@example.org"

    def test_from_is_required_unless_mail_from_is_given(self) -> None:
        """Without From there is no sender, unless mail_from gives one; then it goes as is."""
        with expect_error("From"):
            prepare(raw("To: bob@example.org"))
        prepared = prepare(raw("To: bob@example.org"), mail_from="a@example.org")
        assert prepared.mail_from == "a@example.org"
        assert prepared.data.startswith(b"To: bob@example.org\r\nDate: ")

    def test_sender_must_be_one_mailbox(self) -> None:
        """A Sender header listing two mailboxes is refused."""
        message = raw(*HEADERS, "Sender: a@example.org, b@example.org")
        with expect_error("Sender"):
            prepare(message)

    @pytest.mark.parametrize("null", ["", "<>"])
    def test_null_sender_needs_consent(self, null: str) -> None:
        """The null reverse-path is accepted only with allow_null_sender."""
        with expect_error("mail_from"):
            prepare(raw(*HEADERS), mail_from=null)
        prepared = prepare(raw(*HEADERS), mail_from=null, allow_null_sender=True)
        assert prepared.mail_from == ""

    def test_null_sender_is_never_taken_from_headers(self) -> None:
        """allow_null_sender does not turn an empty From into a null sender."""
        with expect_error("From"):
            prepare(raw("From: ", "To: bob@example.org"), allow_null_sender=True)


class TestRecipients:
    def test_to_cc_bcc_are_deduplicated_in_first_seen_order(self) -> None:
        """Duplicates anywhere in To, Cc and Bcc collapse to the first spelling."""
        message = raw(
            "From: alice@example.org",
            "To: Bob <bob@example.org>, carol@example.org",
            "Cc: dave@example.org, bob@EXAMPLE.ORG",
            "Bcc: carol@Example.Org, erin@example.org, dave@example.org",
        )
        assert prepare(message).recipients == (
            "bob@example.org",
            "carol@example.org",
            "dave@example.org",
            "erin@example.org",
        )

    def test_local_part_case_is_significant(self) -> None:
        """Only the domain is compared case-insensitively (RFC 5321 §2.4)."""
        message = raw("From: alice@example.org", "To: bob@example.org, Bob@example.org")
        assert prepare(message).recipients == ("bob@example.org", "Bob@example.org")

    def test_groups_are_expanded(self) -> None:
        """Group syntax contributes its members; an empty group contributes none."""
        message = raw(
            "From: alice@example.org",
            "To: Team: bob@example.org, carol@example.org;, undisclosed-recipients:;",
        )
        assert prepare(message).recipients == ("bob@example.org", "carol@example.org")

    def test_encoded_display_name_is_not_read_as_an_address(self) -> None:
        """A display name that decodes to 'x@y,' adds no recipient."""
        header = "To: =?utf-8?q?evil=40example.net=2C?= <good@example.org>"
        assert prepare(raw("From: a@example.org", header)).recipients == (
            "good@example.org",
        )
        message = EmailMessage()
        message["From"] = "a@example.org"
        message["To"] = header.removeprefix("To: ")
        assert prepare(message).recipients == ("good@example.org",)

    def test_explicit_rcpt_to_overrides_headers(self) -> None:
        """rcpt_to replaces To, Cc and Bcc as the envelope, and is de-duplicated."""
        prepared = prepare(
            raw(*HEADERS), rcpt_to=["x@example.net", "y@example.net", "x@EXAMPLE.net"]
        )
        assert prepared.recipients == ("x@example.net", "y@example.net")

    def test_no_recipients_is_an_error(self) -> None:
        """A message with no To, Cc, Bcc or rcpt_to cannot be sent."""
        with expect_error("rcpt_to"):
            prepare(raw("From: alice@example.org", "Subject: nobody"))
        with expect_error("rcpt_to"):
            prepare(raw(*HEADERS), rcpt_to=[])

    def test_rcpt_to_must_not_be_a_single_string(self) -> None:
        """A str is refused rather than read as a sequence of characters."""
        with expect_error("rcpt_to"):
            prepare(raw(*HEADERS), rcpt_to="bob@example.org")


class TestBcc:
    def test_bcc_is_removed_from_the_bytes_but_kept_in_the_envelope(self) -> None:
        """Blind recipients get the message without being shown to anyone."""
        message = raw(*HEADERS, "Bcc: secret@example.org", "Resent-Bcc: r@example.org")
        prepared = prepare(message)
        assert "secret@example.org" in prepared.recipients
        assert b"secret" not in prepared.data
        assert b"Bcc" not in prepared.data
        assert b"r@example.org" not in prepared.data


FORK_AND_GENERATE = """
import os
from mailstrom_py.message import prepare_email

def generated_id():
    message = b"From: a@example.org\\r\\nTo: b@example.org\\r\\n\\r\\nhi\\r\\n"
    return prepare_email(message, helo_name="mx.example.org").message_id

read_end, write_end = os.pipe()
child = os.fork()
if child == 0:
    os.write(write_end, generated_id().encode())
    os._exit(0)
os.waitpid(child, 0)
print(generated_id(), os.read(read_end, 200).decode())
"""


class TestDateAndMessageId:
    def test_missing_date_and_message_id_are_added(self) -> None:
        """Date comes from now; Message-ID is 128 random bits in hex at the HELO name."""
        prepared = prepare(raw(*HEADERS))
        parsed = reparse(prepared.data)
        assert parsed["Date"] == "Mon, 06 May 2024 07:08:09 +0000"
        assert re.fullmatch(r"[0-9a-f]{32}@mx\.example\.org", prepared.message_id)
        assert parsed["Message-ID"] == f"<{prepared.message_id}>"

    @pytest.mark.parametrize(
        "when",
        [
            NOW,
            NOW.replace(microsecond=999_999),
            NOW + timedelta(seconds=1),
            NOW + timedelta(days=366, hours=17),
            NOW.astimezone(timezone(timedelta(hours=-5))),
            NOW.astimezone(timezone(timedelta(hours=5, minutes=30))),
            NOW.astimezone(timezone(timedelta(0))),
            NOW.replace(tzinfo=None),
        ],
        ids=str,
    )
    def test_date_is_now_to_the_second_in_its_own_zone(self, when: datetime) -> None:
        """A Date added one call after another follows *now* across seconds and zones."""
        for moment in (NOW, when, NOW, when):
            prepared = prepare(raw(*HEADERS), now=moment)
            expected = f"Date: {format_datetime(moment)}\r\n".encode()
            assert expected in prepared.data

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
    def test_a_forked_child_generates_ids_of_its_own(self) -> None:
        """After fork(), parent and child never draw the same Message-IDs."""
        # In a process of its own: fork() beside the test session's threads warns.
        run = subprocess.run(
            [sys.executable, "-c", FORK_AND_GENERATE],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        parent, child = run.stdout.split()
        assert re.fullmatch(r"[0-9a-f]{32}@mx\.example\.org", child)
        assert child != parent

    def test_existing_date_and_message_id_are_kept(self) -> None:
        """A message that has both keeps them, and the id loses its brackets."""
        date = "Date: Tue, 01 Jan 2030 00:00:00 +0100"
        message = raw(*HEADERS, date, "Message-ID: <abc.123@example.org>")
        prepared = prepare(message)
        assert prepared.message_id == "abc.123@example.org"
        assert date.encode() in prepared.data
        assert prepared.data.count(b"Message-ID:") == 1

    def test_explicit_message_id_is_used_when_missing(self) -> None:
        """The message_id argument fills a missing Message-ID."""
        prepared = prepare(raw(*HEADERS), message_id="fixed.1@example.org")
        assert prepared.message_id == "fixed.1@example.org"
        assert b"Message-ID: <fixed.1@example.org>\r\n" in prepared.data

    def test_idn_helo_name_gives_an_ascii_message_id(self) -> None:
        """A generated id uses the HELO name's A-label."""
        prepared = prepare(raw(*HEADERS), helo_name="bücher.example")
        assert prepared.message_id.endswith("@xn--bcher-kva.example")

    @pytest.mark.parametrize(
        "value",
        [
            "<abc@example.org> <def@example.org>",
            "<abc @example.org>",
            "<abc@example.org",
            "<>",
            "",
        ],
    )
    def test_a_message_id_naming_no_one_id_is_refused(self, value: str) -> None:
        """The message is known by its Message-ID: it must name exactly one id."""
        with expect_error("Message-ID"):
            prepare(raw(*HEADERS, f"Message-ID: {value}"))

    @pytest.mark.parametrize(
        ("value", "sent", "message_id"),
        [
            ("abc@example.org", "abc@example.org", "abc@example.org"),
            ("<xxxx>", "<xxxx>", "xxxx"),
            (" <abcexample.org> ", "<abcexample.org> ", "abcexample.org"),
            ("(comment) <abc@example.org>", "<abc@example.org>", "abc@example.org"),
        ],
    )
    def test_a_message_id_naming_one_id_is_that_id(
        self, value: str, sent: str, message_id: str
    ) -> None:
        """A non-conforming Message-ID goes as written; a valid one loses its comments."""
        prepared = prepare(raw(*HEADERS, f"Message-ID: {value}"))
        assert prepared.message_id == message_id
        assert f"\r\nMessage-ID: {sent}\r\n".encode() in prepared.data

    @pytest.mark.parametrize("value", ["no-at-sign", "<a@b.example>", "a b@c", "a@b\n"])
    def test_bad_explicit_message_id_is_refused(self, value: str) -> None:
        """The message_id argument is checked like a header."""
        with expect_error("message_id"):
            prepare(raw(*HEADERS), message_id=value)

    def test_two_message_ids_are_refused(self) -> None:
        """Only one Message-ID header is allowed."""
        message = raw(*HEADERS, "Message-ID: <a@example.org>", "Message-ID: <b@x.org>")
        with expect_error("Message-ID"):
            prepare(message)

    def test_long_references_fold_between_ids(self) -> None:
        """In-Reply-To and References fold at spaces, never into encoded words."""
        ids = [f"<{'x' * 70}.{n}@example.org>" for n in range(3)]
        message = raw(
            *HEADERS, f"In-Reply-To: {ids[0]}", f"References: {' '.join(ids)}"
        )
        data = prepare(message).data
        assert b"=?" not in data
        assert_wire_safe(data)
        parsed = reparse(data)
        assert str(parsed["In-Reply-To"]) == ids[0]
        assert str(parsed["References"]).split() == ids


BAD_ADDRESSES = [
    "a@b, c@d",
    "alice@example.org)<bob@example.org>",
    "",
    "<>",
    "ok@y.test\r\nRCPT TO:<e@z>",
    "ok@y.test\nx",
    "nul\x00@example.org",
    "nul@example.org\x00",
    "a@",
    "@b",
    "a b@c.test",
    "a@b@c.test",
    "a..b@c.test",
    ".a@c.test",
    "a.@c.test",
    "<alice@example.org>",
    "Alice <alice@example.org>",
    "alice@example.org (comment)",
    "alice@example.org;",
    "alice",
    '"unterminated@example.org',
    '"quoted"x@example.org',
    "a@-example.org",
    "a@example-.org",
    "a@exa_mple.org",
    "a@example..org",
    "a@example.org.",
    "a@[1.2.3]",
    "a@[300.1.1.1]",
    "a@[IPv6:zz::1]",
    "a@[IPv6:fe80::1%eth0]",
    "a@[mail.example.org]",
    "a\u200b@example.org",
    "a@example.org\u2028",
    "a@\u2603.example",
    "a@\u0301x.example",
]


class TestAddressValidation:
    @pytest.mark.parametrize("address", BAD_ADDRESSES)
    def test_bad_envelope_sender_is_refused(self, address: str) -> None:
        """mail_from must be one bare, valid addr-spec."""
        with expect_error("mail_from"):
            prepare(raw(*HEADERS), mail_from=address)

    @pytest.mark.parametrize("address", BAD_ADDRESSES)
    def test_bad_envelope_recipient_is_refused(self, address: str) -> None:
        """Every rcpt_to entry must be one bare, valid addr-spec."""
        with expect_error("rcpt_to"):
            prepare(raw(*HEADERS), rcpt_to=["ok@example.org", address])

    @pytest.mark.parametrize("address", BAD_ADDRESSES)
    def test_validate_address_names_the_field(self, address: str) -> None:
        """validate_address() raises with the field it was given."""
        with expect_error("envelope"):
            validate_address(address, "envelope")

    @pytest.mark.parametrize(
        "value",
        [
            "alice@example.org)<bob@example.org>",
            "<>",
            "a@",
            "@b",
            "a b@c.test",
            "nul\x00@example.org",
            "a@b@c.test",
            "Bob <bob@exa_mple.org>",
            "Bob <a..b@example.org>",
            "Smith, John <john@example.org>",
            "=?utf-8?q?a=0Ab?= <bob@example.org>",
        ],
    )
    def test_bad_header_address_is_refused(self, value: str) -> None:
        """An address header that does not parse cleanly is refused, by name."""
        message = raw("From: alice@example.org", f"To: {value}", "Cc: c@example.org")
        with expect_error("To"):
            prepare(message)

    def test_command_injection_through_a_to_header_is_refused(self) -> None:
        """CRLF in a To value is refused whether it arrives as text or as bytes."""
        message = Message()
        message["From"] = "alice@example.org"
        message["To"] = "ok@y.test\r\nRCPT TO:<e@z>"
        with expect_error("To"):
            prepare(message)
        with pytest.raises(InvalidMessageError, match="malformed"):
            prepare(raw("From: alice@example.org", "To: ok@y.test\r\nRCPT TO:<e@z>"))

    def test_a_list_in_a_header_is_a_list(self) -> None:
        """'a@b, c@d' is refused as one envelope address but is two To addresses."""
        message = raw("From: alice@example.org", "To: a@b, c@d")
        assert prepare(message).recipients == ("a@b", "c@d")

    @pytest.mark.parametrize(
        ("given", "normalised"),
        [
            ("user@example.org", "user@example.org"),
            ("user+tag@sub.Example.org", "user+tag@sub.Example.org"),
            ('"john doe"@example.org', '"john doe"@example.org'),
            ('"john"@example.org', "john@example.org"),
            ('"a\\"b"@example.org', '"a\\"b"@example.org'),
            ('"at@sign"@example.org', '"at@sign"@example.org'),
            ("a@[192.0.2.1]", "a@[192.0.2.1]"),
            ("a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]"),
            ("postmaster@localhost", "postmaster@localhost"),
            ("a@xn--bcher-kva.example", "a@xn--bcher-kva.example"),
        ],
    )
    def test_valid_address_is_normalised(self, given: str, normalised: str) -> None:
        """Valid addresses pass, with minimal quoting and the domain as written."""
        assert validate_address(given, "to") == (normalised, False)

    def test_non_string_is_refused(self) -> None:
        """An address must be a str."""
        with expect_error("rcpt_to"):
            prepare(raw(*HEADERS), rcpt_to=[b"bob@example.org"])  # type: ignore[list-item]

    @given(
        st.from_regex(
            r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[a-z0-9_-]{1,10}){0,2}",
            fullmatch=True,
        ),
        st.from_regex(
            r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,8}){1,3}", fullmatch=True
        ),
    )
    def test_any_dot_atom_address_is_accepted_unchanged(
        self, local: str, domain: str
    ) -> None:
        """Every dot-atom local part at an LDH domain is valid as written."""
        assert validate_address(f"{local}@{domain}", "to") == (
            f"{local}@{domain}",
            False,
        )


class TestLengthLimits:
    def test_local_part_of_64_octets_is_the_limit(self) -> None:
        """RFC 5321 §4.5.3.1.1: 64 octets pass, 65 do not."""
        assert validate_address("a" * 64 + "@example.org", "to")[0].startswith("a" * 64)
        with expect_error("to"):
            validate_address("a" * 65 + "@example.org", "to")

    def test_utf8_local_part_is_measured_in_octets(self) -> None:
        """33 two-octet characters are 66 octets: too long."""
        with expect_error("to"):
            validate_address("é" * 33 + "@example.org", "to")

    def test_domain_over_255_octets_is_refused(self) -> None:
        """RFC 5321 §4.5.3.1.2: a domain is at most 255 octets."""
        domain = ".".join(["d" * 63] * 4) + ".org"
        with pytest.raises(
            InvalidMessageError, match="is 259 octets; the limit is 255"
        ):
            validate_address("a@" + domain, "to")

    def test_address_of_254_octets_is_the_limit(self) -> None:
        """RFC 5321 §4.5.3.1.3: the path is 256 octets with its brackets."""
        domain = ".".join(["d" * 60] * 3) + "." + "e" * 59
        fits = "a" * (253 - len(domain)) + "@" + domain
        assert len(fits) == 254
        assert validate_address(fits, "to") == (fits, False)
        with expect_error("to"):
            validate_address("a" + fits, "to")

    def test_label_over_63_octets_is_refused(self) -> None:
        """A DNS label holds at most 63 octets."""
        assert validate_address("a@" + "l" * 63 + ".org", "to")
        with expect_error("to"):
            validate_address("a@" + "l" * 64 + ".org", "to")

    def test_limits_apply_to_headers(self) -> None:
        """An over-long address in To is refused like one in rcpt_to."""
        with expect_error("To"):
            prepare(raw("From: alice@example.org", "To: " + "a" * 65 + "@example.org"))


class TestInternationalAddresses:
    def test_utf8_local_part_needs_smtputf8(self) -> None:
        """A non-ASCII local part is kept as UTF-8 and flags SMTPUTF8."""
        assert validate_address("jörg@example.de", "to") == ("jörg@example.de", True)
        prepared = prepare(raw(*HEADERS), rcpt_to=["jörg@example.de"])
        assert prepared.smtputf8
        assert prepared.recipients == ("jörg@example.de",)

    def test_utf8_local_part_in_a_header_is_sent_as_utf8(self) -> None:
        """RFC 6532: with SMTPUTF8 the header carries raw UTF-8, not encoded words."""
        message = raw("From: alice@example.org", "To: Jörg <jörg@example.de>")
        prepared = prepare(message)
        assert prepared.smtputf8
        assert prepared.eight_bit
        assert "To: Jörg <jörg@example.de>\r\n".encode() in prepared.data
        assert_wire_safe(prepared.data, ascii_only=False)

    def test_idn_domain_becomes_an_a_label(self) -> None:
        """A non-ASCII domain goes out as its A-label and needs no SMTPUTF8."""
        assert validate_address("a@bücher.example", "to") == (
            "a@xn--bcher-kva.example",
            False,
        )
        message = raw("From: Bücher <info@bücher.example>", "To: kunde@bücher.example")
        prepared = prepare(message)
        assert not prepared.smtputf8
        assert prepared.mail_from == "info@xn--bcher-kva.example"
        assert prepared.recipients == ("kunde@xn--bcher-kva.example",)
        assert_wire_safe(prepared.data)
        parsed = reparse(prepared.data)
        assert parsed["From"].addresses[0].display_name == "Bücher"
        assert parsed["To"].addresses[0].domain == "xn--bcher-kva.example"

    def test_idn_follows_idna_2008(self) -> None:
        """IDNA 2008 (UTS 46, non-transitional): "ß" is kept, not mapped to "ss"."""
        assert validate_address("a@Straße.de", "to") == ("a@xn--strae-oqa.de", False)

    def test_an_invalid_idn_is_refused_at_send(self) -> None:
        """A label IDNA 2008 disallows (a symbol) raises InvalidMessageError."""
        with expect_error("To"):
            prepare(raw("From: alice@example.org", "To: a@\u2603.example"))

    def test_idn_with_ideographic_dots(self) -> None:
        """IDNA separators other than '.' split labels too."""
        assert validate_address("a@例え。テスト", "to")[0] == "a@xn--r8jz45g.xn--zckzah"

    def test_idn_dedupes_against_its_a_label(self) -> None:
        """A U-label and its A-label spelling are one recipient."""
        prepared = prepare(
            raw(*HEADERS), rcpt_to=["a@bücher.example", "a@XN--BCHER-KVA.example"]
        )
        assert prepared.recipients == ("a@xn--bcher-kva.example",)


class TestHeaderInjection:
    @pytest.mark.parametrize(
        "value",
        ["a\r\nX-Evil: 1", "a\nX-Evil: 1", "a\rX-Evil: 1", "a\x00b", "a\x0cX-Evil: 1"],
    )
    def test_line_break_or_nul_in_a_header_is_refused(self, value: str) -> None:
        """A header value holding CR, LF, NUL or another line break is refused."""
        message = Message()
        message["From"] = "alice@example.org"
        message["To"] = "bob@example.org"
        message["Subject"] = value
        with expect_error("Subject"):
            prepare(message)

    @pytest.mark.parametrize(
        "text", ["hi\x00there", "hi\x0cX-Evil: 1", "hi\x0bX-Evil: 1", "hi\x1cX-Evil: 1"]
    )
    def test_line_breaking_octet_in_raw_bytes_is_refused(self, text: str) -> None:
        """The email package would fold at these; they are refused instead."""
        with expect_error("Subject"):
            prepare(
                raw("From: alice@example.org", "To: b@example.org", f"Subject: {text}")
            )

    @pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029"])
    def test_unicode_line_separator_is_refused(self, char: str) -> None:
        """str.splitlines() separators in a str message's header are refused."""
        message = "From: alice@example.org\nTo: b@example.org\nSubject: a" + char
        with expect_error("Subject"):
            prepare(message + "X-Evil: 1\n\nbody\n")

    def test_encoded_newline_in_parsed_bytes_is_refused(self) -> None:
        """CVE-2024-6923: an encoded word decoding to a newline is refused."""
        message = raw(*HEADERS[:2], "Subject: =?UTF-8?Q?x=0AX-Evil:_1?=")
        with expect_error("Subject"):
            prepare(message)

    def test_encoded_newline_copied_into_a_new_message_is_refused(self) -> None:
        """CVE-2024-6923: a parsed header re-set on an EmailMessage is refused."""
        parsed = reparse(raw(*HEADERS[:2], "Subject: =?UTF-8?Q?x=0AX-Evil:_1?="))
        message = EmailMessage()
        message["From"] = "alice@example.org"
        message["To"] = "bob@example.org"
        message["Subject"] = parsed["Subject"]
        message.set_content("hello\n")
        with expect_error("Subject"):
            prepare(message)

    def test_encoded_newline_in_a_mime_parameter_is_refused(self) -> None:
        """An RFC 2231 parameter decoding to CR LF is refused."""
        message = raw(
            *HEADERS,
            "Content-Type: text/plain",
            "Content-Disposition: attachment; filename*=utf-8''a%0D%0AX-Evil:%201",
        )
        with expect_error("Content-Disposition"):
            prepare(message)

    def test_bad_header_name_is_refused(self) -> None:
        """A header name with a space or line break is refused."""
        message = EmailMessage()
        message["From"] = "alice@example.org"
        message["To"] = "bob@example.org"
        message["X-A\r\nX-Evil"] = "1"
        with pytest.raises(InvalidMessageError, match="header field name"):
            prepare(message)

    def test_line_that_is_not_a_header_is_refused_without_an_envelope(self) -> None:
        """A header line without a colon ends the headers for some readers, not all."""
        message = raw(
            "From: alice@example.org", "To: b@example.org", "oops", "Subject: x"
        )
        with pytest.raises(InvalidMessageError, match="malformed"):
            prepare(message)

    @pytest.mark.parametrize(
        "headers",
        [
            [" continued", "From: alice@example.org", "To: b@example.org"],
            ["From: alice@example.org", "From nobody Mon May  6 2024", "To: b@x.org"],
            ["From: alice@example.org", "To: b@example.org", "From nobody Mon May 6"],
            [": no name", "From: alice@example.org", "To: b@example.org"],
            ["From: alice@example.org", ": no name", "To: b@example.org"],
            ["From: alice@example.org", "Subject : obsolete", "To: b@example.org"],
        ],
        ids=[
            "continuation first",
            "mbox From line inside",
            "mbox From line last",
            "no field name first",
            "no field name inside",
            "blank before the colon",
        ],
    )
    def test_line_that_readers_take_differently_is_refused(
        self, headers: list[str]
    ) -> None:
        """The email package drops or moves such a line, where another reader would not."""
        with pytest.raises(InvalidMessageError, match=r"(?i)header"):
            prepare(raw(*headers), mail_from="a@example.org", rcpt_to=["b@x.org"])

    @pytest.mark.parametrize(
        "name", ["From", "Sender", "Message-ID", "To", "Cc", "Bcc", "Content-Type"]
    )
    def test_duplicate_header_that_leaves_something_open_is_refused(
        self, name: str
    ) -> None:
        """Two of a header that says who wrote it, its id, its recipients or its type."""
        extra = ("Sender: s@example.org", "Cc: c@example.org", "Bcc: b@example.org")
        extra += ("Message-ID: <m@example.org>", "Content-Type: text/plain")
        duplicate = "<n@example.org>" if name == "Message-ID" else "x@example.org"
        message = raw(*HEADERS, *extra, f"{name}: {duplicate}")
        with expect_error(name):
            prepare(message)

    @pytest.mark.parametrize("name", ["Subject", "Date", "Reply-To", "MIME-Version"])
    def test_duplicate_header_that_decides_nothing_goes_as_written(
        self, name: str
    ) -> None:
        """RFC 5322 §3.6 allows one, but a second one is merely non-conforming."""
        message = raw(
            *HEADERS, "Date: Mon, 06 May 2024 07:08:09 +0000", "MIME-Version: 1.0"
        )
        message = message.replace(b"\r\n\r\n", f"\r\n{name}: 1.0\r\n\r\n".encode())
        prepared = prepare(message, message_id="m.1@example.org")
        assert prepared.data.startswith(message.partition(b"\r\n\r\n")[0])

    def test_headers_are_unchanged_apart_from_the_additions(self) -> None:
        """Parsed again, the bytes show the caller's headers plus Date and Message-ID."""
        message = raw(*HEADERS, "X-Custom: value", "Bcc: hidden@example.org")
        parsed = reparse(prepare(message).data)
        names = ["From", "To", "Subject", "X-Custom", "Date", "Message-ID"]
        assert parsed.keys() == names


HIDDEN_BCC = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x{end}Bcc: c@evil.org\r\n\r\nhi\r\n"
SPLIT_HEADERS = {
    "bare CR": (HIDDEN_BCC.replace(b"{end}", b"\r"), "Subject"),
    "bare LF among CRLF": (HIDDEN_BCC.replace(b"{end}", b"\n"), "Subject"),
    "bare CR, as str": (HIDDEN_BCC.replace(b"{end}", b"\r").decode(), "Subject"),
    "bare LF among CRLF, as str": (
        HIDDEN_BCC.replace(b"{end}", b"\n").decode(),
        "Subject",
    ),
    "bare CR in an address": (
        b"From: a@example.org\r\nTo: bob@exam\rX-Evil: 1ple.org\r\n\r\nhi\r\n",
        "To",
    ),
    "bare CR among LF": (
        b"From: a@example.org\nTo: b@example.org\nSubject: x\rBcc: c@evil.org\n\nhi\n",
        "Subject",
    ),
    "LF alone ending the header section early": (
        b"From: a@example.org\r\nTo: b@example.org\r\n\nBcc: c@evil.org\r\n\r\nhi\r\n",
        "To",
    ),
}


@pytest.fixture
def mailer_and_server(
    smtp_server: SmtpServerFactory,
) -> Iterator[tuple[Mailstrom, MemoryStorage, SmtpServer]]:
    """A mailer with its own storage, relaying to a loopback server."""
    server = smtp_server()
    storage = MemoryStorage()
    config = Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        timeouts=Timeouts.uniform(10),
    )
    mailer = Mailstrom(config, storage)
    yield mailer, storage, server
    mailer.stop()


class TestHeaderLineEnds:
    @pytest.mark.parametrize(
        ("message", "field"), SPLIT_HEADERS.values(), ids=SPLIT_HEADERS.keys()
    )
    @pytest.mark.parametrize("explicit", [False, True], ids=["headers", "envelope"])
    def test_a_header_line_split_by_a_bare_line_end_is_refused(
        self,
        mailer_and_server: tuple[Mailstrom, MemoryStorage, SmtpServer],
        message: bytes | str,
        field: str,
        explicit: bool,
    ) -> None:
        """A bare CR, or LF beside CRLF, in the header section is refused: nothing stored or sent."""
        mailer, storage, server = mailer_and_server
        envelope = (
            {"mail_from": "a@example.org", "rcpt_to": ["b@example.org"]}
            if explicit
            else {}
        )
        with expect_error(field):
            mailer.send_email(message, **envelope)  # type: ignore[arg-type]
        assert storage.count(QueueFilter()) == 0
        mailer.run_once()
        assert server.handler.connections == 0

    @pytest.mark.parametrize("kind", [bytes, str])
    def test_a_message_written_with_lf_alone_goes_out_in_crlf(
        self,
        mailer_and_server: tuple[Mailstrom, MemoryStorage, SmtpServer],
        kind: type[bytes] | type[str],
    ) -> None:
        """Unix line ends throughout become CRLF throughout, in every part, octets kept."""
        mailer, _, server = mailer_and_server
        message = (
            b"From: alice@example.org\nTo: bob@example.org\nSubject: signed\n"
            b"Date: Mon, 06 May 2024 07:08:09 +0000\nMessage-ID: <lf.1@example.org>\n"
            b'MIME-Version: 1.0\nContent-Type: multipart/signed; boundary="b"\n\n'
            b"--b\nContent-Type: text/plain\n\nHello.\n\n"
            b"--b\nContent-Type: application/pgp-signature\n\n"
            b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
            b"--b--\n"
        )
        given = message if kind is bytes else message.decode()
        assert mailer.send_email(given) == "lf.1@example.org"  # type: ignore[arg-type]
        mailer.run_once()
        [received] = server.handler.messages
        assert received.data == message.replace(b"\n", b"\r\n")


SMUGGLING_BODIES = [
    b"one\n.\ntwo\n",
    b"one\r.\rtwo\r",
    b"one\n.\r\ntwo\r\n",
    b"one\r\n.\ntwo\n",
    b"one\rtwo\nthree\r\n",
    b"one\r\r\ntwo",
]


class TestBodyCanonicalisation:
    @pytest.mark.parametrize("body", SMUGGLING_BODIES)
    def test_bare_cr_and_lf_become_crlf(self, body: bytes) -> None:
        """SMTP smuggling: every bare CR or LF comes out as a CRLF line end."""
        prepared = prepare(raw(*HEADERS, body=body))
        assert_wire_safe(prepared.data)
        expected = re.split(rb"\r\n|\r|\n", body.rstrip(b"\r\n"))
        assert body_of(prepared.data).split(b"\r\n")[:-1] == expected

    @pytest.mark.parametrize("body", SMUGGLING_BODIES)
    def test_bare_cr_and_lf_in_a_part_become_crlf(self, body: bytes) -> None:
        """The same holds inside a multipart."""
        message = raw(
            *HEADERS,
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="b"',
            body=b"--b\r\nContent-Type: text/plain\r\n\r\n" + body + b"\r\n--b--\r\n",
        )
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        part = reparse(prepared.data).get_payload(0)
        assert isinstance(part, EmailMessage)
        got, want = lines(part.get_content()), lines(body.decode())
        assert got.rstrip("\n") == want.rstrip("\n")

    def test_lines_starting_with_a_dot_are_kept_as_they_are(self) -> None:
        """Dot-stuffing is the SMTP layer's job: the data keeps single dots."""
        body = b".hidden\r\n..double\r\n.\r\nend\r\n"
        prepared = prepare(raw(*HEADERS, body=body))
        assert body_of(prepared.data) == body

    def test_data_always_ends_with_crlf(self) -> None:
        """A body without a final line end gets one; an empty body is fine."""
        unterminated = prepare(raw(*HEADERS, body=b"no newline")).data
        assert unterminated.endswith(b"\r\nno newline\r\n")
        assert prepare(raw(*HEADERS, body=b"")).data.endswith(b"\r\n")

    def test_non_text_part_with_bare_line_ends_keeps_its_octets(self) -> None:
        """7bit data that is not text and not CRLF lines goes as base64, unchanged."""
        data = b"line\nother\rthird\r\n"
        message = raw(
            *HEADERS, "MIME-Version: 1.0", "Content-Type: application/x-data", body=data
        )
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        parsed = reparse(prepared.data)
        assert parsed["Content-Transfer-Encoding"] == "base64"
        assert parsed.get_content() == data

    def test_message_without_a_body(self) -> None:
        """A message of headers only gets an empty body."""
        prepared = prepare(b"From: alice@example.org\r\nTo: bob@example.org\r\n")
        assert_wire_safe(prepared.data)
        assert prepared.data.endswith(b"\r\n\r\n")

    def test_attached_message_is_made_seven_bit(self) -> None:
        """An attached message/rfc822 with 8-bit content is re-encoded inside."""
        inner = EmailMessage()
        inner["From"] = "Jörg <joerg@example.de>"
        inner["Subject"] = "Grüße"
        inner.set_content("Grüße\n")
        outer = EmailMessage()
        outer["From"] = "alice@example.org"
        outer["To"] = "bob@example.org"
        outer.set_content("forwarded\n")
        outer.add_attachment(inner)
        prepared = prepare(outer)
        assert_wire_safe(prepared.data)
        attached = reparse(prepared.data).get_payload(1)
        assert isinstance(attached, EmailMessage)
        forwarded = attached.get_payload(0)
        assert isinstance(forwarded, EmailMessage)
        assert forwarded["Subject"] == "Grüße"
        assert lines(forwarded.get_content()) == "Grüße\n"

    def test_lf_only_message_becomes_crlf(self) -> None:
        """A message written with Unix line ends is sent with CRLF throughout."""
        message = b"From: alice@example.org\nTo: bob@example.org\n\nline 1\nline 2\n"
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        assert body_of(prepared.data) == b"line 1\r\nline 2\r\n"


ENVELOPE = {"mail_from": "a@example.org", "rcpt_to": ["b@example.org"]}
DATED = (
    "From: alice@example.org",
    "To: bob@example.org",
    "Subject: x",
    "Date: Mon, 06 May 2024 07:08:09 +0000",
    "Message-ID: <n.1@example.org>",
)
MIXED = ("MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"')
NON_CONFORMING = {
    "multipart without boundary": raw(
        *DATED,
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative;",
        body="x\r\n",
    ),
    "multipart whose boundary never comes": raw(
        *DATED, *MIXED, body=b"--c\r\n\r\ntext\r\n--c--\r\n"
    ),
    "part headers running into its body": raw(
        *DATED, *MIXED, body=b"--b\r\nContent-Type: text/plain\r\nbar\r\n--b--\r\n"
    ),
    "empty part before the closing boundary": raw(
        *DATED, *MIXED, body=b"--b\r\nContent-Type: text/plain\r\n\r\n--b--\r\n"
    ),
    "headers running into the body": "\r\n".join(DATED).encode()
    + b"\r\nno empty line before this\r\n",
    "From without a domain": raw("From: foo", *DATED[1:]),
    "From with a null address": raw("From: MAILER DAEMON <>", *DATED[1:]),
    "no From": raw(*DATED[1:]),
    "two From mailboxes, no Sender": raw("From: a@example.org, c@x.org", *DATED[1:]),
    "two Cc": raw(*DATED, "Cc: c@example.org", "Cc: d@example.org"),
    "To without a domain": raw(DATED[0], "To: undisclosed-recipients", *DATED[2:]),
    "Resent-From without a domain": raw(*DATED, "Resent-From: foo"),
}


class TestNonConforming:
    @pytest.mark.parametrize(
        "message", NON_CONFORMING.values(), ids=NON_CONFORMING.keys()
    )
    def test_non_conforming_message_goes_as_it_came(self, message: bytes) -> None:
        """With the envelope given, what is merely non-conforming is sent byte for byte."""
        assert prepare(message, **ENVELOPE).data == message
        written_with_lf = message.replace(b"\r\n", b"\n")
        assert prepare(written_with_lf, **ENVELOPE).data == message

    @pytest.mark.parametrize(
        "message",
        [
            NON_CONFORMING["headers running into the body"],
            NON_CONFORMING["no From"],
            NON_CONFORMING["two Cc"],
            NON_CONFORMING["To without a domain"],
        ],
        ids=["headers into body", "no From", "two Cc", "To without a domain"],
    )
    def test_headers_the_envelope_would_come_from_must_be_sound(
        self, message: bytes
    ) -> None:
        """Without an envelope, recipients and sender come from headers: those must parse."""
        with pytest.raises(InvalidMessageError):
            prepare(message)

    @pytest.mark.parametrize(
        "body",
        [b"x" * 1200 + b"\r\n", b"nul\x00\r\n", "Grüße\r\n".encode()],
        ids=["long line", "NUL", "8-bit"],
    )
    def test_multipart_without_parts_that_needs_re_encoding_is_refused(
        self, body: bytes
    ) -> None:
        """Without its parts a multipart cannot be re-encoded, so unsafe data stays out."""
        message = raw(
            *DATED, "MIME-Version: 1.0", "Content-Type: multipart/mixed", body=body
        )
        with expect_error("Content-Type"):
            prepare(message, **ENVELOPE)

    def test_multipart_without_parts_may_stay_8bit_when_allowed(self) -> None:
        """With allow_8bit its 8-bit data goes as it came, flagged for 8BITMIME."""
        message = raw(
            *DATED,
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed",
            body="Grüße\r\n",
        )
        prepared = prepare(message, allow_8bit=True, **ENVELOPE)
        assert prepared.data == message
        assert prepared.eight_bit

    @pytest.mark.parametrize(
        ("header", "field"),
        [
            ("Subject: =?UTF-8?Q?x=0AX-Evil:_1?=", "Subject"),
            ("Subject: a\x00b", "Subject"),
            ("Subject: a\x0cX-Evil: 1", "Subject"),
            (f"References: <{'r' * 1200}@example.org>", "References"),
            ("Content-Type: text/plain\r\nContent-Type: text/html", "Content-Type"),
        ],
        ids=["encoded newline", "NUL", "form feed", "unfoldable line", "two types"],
    )
    def test_unsafe_input_is_refused_even_with_an_envelope(
        self, header: str, field: str
    ) -> None:
        """An envelope relaxes what routing needs, never injection or smuggling checks."""
        message = raw(*DATED, header, body=b"hi\r\n")
        with expect_error(field):
            prepare(message, **ENVELOPE)

    def test_a_message_without_headers_gets_only_date_and_message_id(self) -> None:
        """Text with no header section goes as it came, after the two added fields."""
        message = b"Send submissions to\r\n\tlist@example.org\r\n"
        prepared = prepare(message, message_id="m.1@example.org", **ENVELOPE)
        assert prepared.data == (
            b"Date: Mon, 06 May 2024 07:08:09 +0000\r\n"
            b"Message-ID: <m.1@example.org>\r\n" + message
        )

    def test_a_str_message_with_8bit_headers_keeps_its_own_body(self) -> None:
        """Characters beyond ASCII in the headers alone: the body still goes as it came."""
        message = "\r\n".join(
            [*DATED, "X-Note: Grüße", "no empty line before this", ""]
        )
        data = prepare(message, **ENVELOPE).data
        assert data.endswith(b"?=\r\nno empty line before this\r\n")

    def test_an_mbox_from_line_before_the_headers_is_dropped(self) -> None:
        """RFC 4155: the mbox separator line is no part of the message it precedes."""
        message = raw(*DATED)
        prepared = prepare(b"From nobody Mon May  6 07:08:09 2024\r\n" + message)
        assert prepared.data == message


class TestLongLines:
    def test_3000_octet_text_line_is_quoted_printable(self) -> None:
        """A 3000-octet line is re-encoded so every line fits in 1000 octets."""
        text = "".join(chr(ord("a") + n % 26) for n in range(3000))
        prepared = prepare(
            raw(*HEADERS, "Content-Type: text/plain", body=text + "\r\n")
        )
        assert_wire_safe(prepared.data)
        parsed = reparse(prepared.data)
        assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
        assert lines(parsed.get_content()) == text + "\n"

    def test_long_line_in_an_attachment_becomes_base64(self) -> None:
        """A non-text part with a long line is re-encoded as base64, octet for octet."""
        data = b"x" * 2500 + b"\r\n" + b"y" * 10
        message = raw(
            *HEADERS,
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="b"',
            body=b"--b\r\nContent-Type: application/octet-stream\r\n\r\n"
            + data
            + b"\r\n--b--\r\n",
        )
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        part = reparse(prepared.data).get_payload(0)
        assert isinstance(part, EmailMessage)
        assert part["Content-Transfer-Encoding"] == "base64"
        assert part.get_content() == data

    def test_long_base64_line_is_rewrapped(self) -> None:
        """base64 sent as one long line is rewrapped; the content is unchanged."""
        content = bytes(range(256)) * 10
        encoded = base64.b64encode(content)
        message = raw(
            *HEADERS,
            "MIME-Version: 1.0",
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: base64",
            body=encoded + b"\r\n",
        )
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        assert reparse(prepared.data).get_content() == content

    def test_long_unstructured_header_is_folded(self) -> None:
        """A Subject too long for one line is folded and reads back the same."""
        subject = " ".join(["word"] * 300)
        prepared = prepare(raw(*HEADERS[:2], f"Subject: {subject}"))
        assert_wire_safe(prepared.data)
        assert reparse(prepared.data)["Subject"] == subject

    def test_long_word_in_a_subject_is_encoded_to_fit(self) -> None:
        """A 1200-octet word in a Subject is split into encoded words."""
        word = "w" * 1200
        prepared = prepare(raw(*HEADERS[:2], f"Subject: {word}"))
        assert_wire_safe(prepared.data)
        assert reparse(prepared.data)["Subject"] == word

    def test_header_that_cannot_be_folded_is_refused(self) -> None:
        """A References id of 1200 octets cannot fit in a line: refused."""
        message = raw(*HEADERS, f"References: <{'r' * 1200}@example.org>")
        with expect_error("References"):
            prepare(message)


class TestEightBit:
    def test_utf8_body_is_seven_bit_by_default(self) -> None:
        """8-bit text is re-encoded as quoted-printable unless 8-bit is allowed."""
        message = raw(
            *HEADERS,
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            body="Grüße, 世界\r\n",
        )
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        assert not prepared.eight_bit
        parsed = reparse(prepared.data)
        assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
        assert lines(parsed.get_content()) == "Grüße, 世界\n"

    def test_utf8_body_stays_eight_bit_when_allowed(self) -> None:
        """With allow_8bit, 8-bit text goes as 8bit and is flagged."""
        message = raw(
            *HEADERS, "Content-Type: text/plain; charset=utf-8", body="Grüße\r\n"
        )
        prepared = prepare(message, allow_8bit=True)
        assert_wire_safe(prepared.data, ascii_only=False)
        assert prepared.eight_bit
        assert body_of(prepared.data) == "Grüße\r\n".encode()
        assert reparse(prepared.data)["Content-Transfer-Encoding"] == "8bit"

    def test_long_lines_are_re_encoded_even_when_8bit_is_allowed(self) -> None:
        """allow_8bit keeps 8-bit text, never over-long lines."""
        message = raw(*HEADERS, body="é" * 600 + "\r\n")
        prepared = prepare(message, allow_8bit=True)
        assert_wire_safe(prepared.data)
        assert lines(reparse(prepared.data).get_content()) == "é" * 600 + "\n"

    def test_8bit_attachment_is_base64_even_when_8bit_is_allowed(self) -> None:
        """Only text may stay 8-bit; other data becomes base64, octet for octet."""
        data = bytes(range(256))
        message = raw(
            *HEADERS,
            "MIME-Version: 1.0",
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: binary",
            body=data,
        )
        prepared = prepare(message, allow_8bit=True)
        assert_wire_safe(prepared.data)
        assert reparse(prepared.data).get_content() == data

    def test_missing_charset_is_declared(self) -> None:
        """8-bit UTF-8 text without a charset is labelled utf-8 when re-encoded."""
        prepared = prepare(raw(*HEADERS, body="naïve\r\n"))
        parsed = reparse(prepared.data)
        assert parsed.get_content_charset() == "utf-8"
        assert parsed["MIME-Version"] == "1.0"
        assert lines(parsed.get_content()) == "naïve\n"

    def test_str_message_with_non_ascii_body(self) -> None:
        """A str message's characters are sent in its declared charset."""
        message = (
            "From: alice@example.org\nTo: bob@example.org\n"
            "Content-Type: text/plain; charset=iso-8859-1\n\ncafé\n"
        )
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        assert b"caf=E9" in prepared.data
        assert lines(reparse(prepared.data).get_content()) == "café\n"

    def test_raw_utf8_subject_becomes_an_encoded_word(self) -> None:
        """A UTF-8 Subject in bytes is sent as RFC 2047 words; no SMTPUTF8 needed."""
        prepared = prepare(raw(*HEADERS[:2], "Subject: Grüße"))
        assert_wire_safe(prepared.data)
        assert not prepared.smtputf8
        assert reparse(prepared.data)["Subject"] == "Grüße"

    def test_header_octets_that_are_not_utf8_are_refused(self) -> None:
        """Latin-1 octets in a header cannot be interpreted safely."""
        message = (
            b"From: alice@example.org\r\nTo: b@example.org\r\nSubject: caf\xe9\r\n"
        )
        with expect_error("Subject"):
            prepare(message)


class TestInputs:
    def test_caller_email_message_is_not_changed(self) -> None:
        """Bcc, a missing Date and Message-ID, and 8-bit text stay as the caller left them."""
        message = EmailMessage()
        message["From"] = "Alice <alice@example.org>"
        message["To"] = "bob@bücher.example"
        message["Bcc"] = "secret@example.org"
        message.set_content("Grüße\n" + "x" * 1200 + "\n")
        message.add_attachment(
            b"\x00\xff" * 10, maintype="application", subtype="x-thing"
        )
        before = message.as_bytes()
        keys = message.keys()
        snapshot = copy.deepcopy(message)
        prepared = prepare(message)
        assert message.as_bytes() == before
        assert message.keys() == keys
        assert message["Bcc"] == "secret@example.org"
        assert str(message["To"]) == str(snapshot["To"])
        assert prepared.recipients == (
            "bob@xn--bcher-kva.example",
            "secret@example.org",
        )
        assert_wire_safe(prepared.data)

    def test_email_message_content_survives(self) -> None:
        """Text and attachments of an EmailMessage decode to what was set."""
        message = EmailMessage()
        message["From"] = "alice@example.org"
        message["To"] = "bob@example.org"
        message["Subject"] = "Grüße aus Köln"
        message.set_content("Hallo, schöne Grüße.\n.\nEnde\n")
        message.add_attachment(
            bytes(range(256)),
            maintype="application",
            subtype="octet-stream",
            filename="data.bin",
        )
        parsed = reparse(prepare(message).data)
        assert parsed["Subject"] == "Grüße aus Köln"
        text, attachment = parsed.iter_parts()
        assert isinstance(text, EmailMessage)
        assert isinstance(attachment, EmailMessage)
        assert lines(text.get_content()) == "Hallo, schöne Grüße.\n.\nEnde\n"
        assert attachment.get_content() == bytes(range(256))
        assert attachment.get_filename() == "data.bin"

    def test_str_message(self) -> None:
        """A str message is parsed like bytes."""
        prepared = prepare("From: alice@example.org\nTo: bob@example.org\n\nhi\n")
        assert prepared.recipients == ("bob@example.org",)
        assert body_of(prepared.data) == b"hi\r\n"

    def test_compat32_message(self) -> None:
        """A compat32 Message is accepted through its bytes."""
        message = Message()
        message["From"] = "alice@example.org"
        message["To"] = "bob@example.org"
        message.set_payload("hi\n")
        assert prepare(message).recipients == ("bob@example.org",)

    def test_bytearray_message(self) -> None:
        """bytearray is accepted like bytes."""
        assert prepare(bytearray(raw(*HEADERS))).mail_from == "alice@example.org"

    def test_other_types_are_a_type_error(self) -> None:
        """Anything else is a programming error, not an invalid message."""
        with pytest.raises(TypeError):
            prepare(42)  # type: ignore[arg-type]

    def test_prepared_email_is_frozen(self) -> None:
        """A PreparedEmail cannot be changed after the fact."""
        prepared = prepare(raw(*HEADERS))
        with pytest.raises(AttributeError):
            prepared.data = b""  # type: ignore[misc]


BODY_TEXT = st.text(
    alphabet=st.sampled_from(
        ["a", "Z", " ", "\t", ".", "\r", "\n", "=", "é", "世", "\x00", "😀"]
    )
    | st.characters(codec="utf-8"),
    max_size=1500,
)


def round_trips(original: str, decoded: str) -> bool:
    """Equal up to line-end normalisation and one added final line end."""
    want, got = lines(original), lines(decoded)
    return got == want or (not want.endswith("\n") and got == want + "\n")


class TestProperties:
    @given(BODY_TEXT)
    @example(".\r\n..\n.\r.")
    @example("x" * 1200)
    @example("trailing space \nand tab\t")
    def test_any_text_body_is_wire_safe_and_round_trips(self, text: str) -> None:
        """Any text body gives CRLF-only, short, 7-bit lines that decode to it."""
        message = raw(
            *HEADERS, "Content-Type: text/plain; charset=utf-8", body=text.encode()
        )
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        assert round_trips(text, reparse(prepared.data).get_content())

    @given(BODY_TEXT)
    def test_any_text_body_with_8bit_allowed(self, text: str) -> None:
        """With allow_8bit the same holds, except that octets may be 8-bit."""
        message = raw(
            *HEADERS, "Content-Type: text/plain; charset=utf-8", body=text.encode()
        )
        prepared = prepare(message, allow_8bit=True)
        assert_wire_safe(prepared.data, ascii_only=False)
        assert prepared.eight_bit == (not prepared.data.isascii())
        assert round_trips(text, reparse(prepared.data).get_content())

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["", "Bob", "J. Smith", '"Smith, John"', '"a <b>"']),
                st.from_regex(
                    r"[a-z]{1,8}(\.[a-z]{1,5})?@[a-z]{1,8}\.(org|test)", fullmatch=True
                ),
            ),
            min_size=1,
            max_size=5,
        )
    )
    def test_address_lists_read_as_the_email_package_reads_them(
        self, mailboxes: list[tuple[str, str]]
    ) -> None:
        """To yields exactly the addresses the stdlib header parser finds, deduplicated."""
        value = ", ".join(
            f"{name} <{addr}>" if name else addr for name, addr in mailboxes
        )
        expected = [
            a.addr_spec for a in policy.default.header_factory("To", value).addresses
        ]
        prepared = prepare(raw("From: alice@example.org", f"To: {value}"))
        assert prepared.recipients == tuple(dict.fromkeys(expected))

    @given(st.binary(max_size=400), st.booleans())
    def test_any_input_is_refused_or_made_wire_safe(
        self, tail: bytes, allow_8bit: bool
    ) -> None:
        """Whatever follows From and To, the result is an InvalidMessageError or safe."""
        message = b"From: alice@example.org\r\nTo: bob@example.org\r\n" + tail
        try:
            prepared = prepare(message, allow_8bit=allow_8bit)
        except InvalidMessageError:
            return
        assert_wire_safe(
            prepared.data, ascii_only=not (allow_8bit or prepared.smtputf8)
        )
        assert prepared.eight_bit == (not prepared.data.isascii())

    @given(st.binary(max_size=3000))
    def test_any_attachment_round_trips_exactly(self, data: bytes) -> None:
        """Attachment octets survive exactly, whatever they are."""
        message = EmailMessage()
        message["From"] = "alice@example.org"
        message["To"] = "bob@example.org"
        message.set_content("see attached\n")
        message.add_attachment(data, maintype="application", subtype="octet-stream")
        prepared = prepare(message)
        assert_wire_safe(prepared.data)
        _, attachment = reparse(prepared.data).iter_parts()
        assert isinstance(attachment, EmailMessage)
        assert attachment.get_content() == data
