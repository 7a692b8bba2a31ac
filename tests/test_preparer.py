"""Preparer: one way in for every message, with its policy, clock and Message-IDs."""

from __future__ import annotations

import dataclasses
import inspect
import random
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import dkim
import pytest

from mailstrom_py import (
    Config,
    ConfigError,
    DkimConfig,
    InvalidMessageError,
    PreparedEmail,
    RelayConfig,
)
from mailstrom_py.message import Preparer, prepare_email
from mailstrom_py.message.completion import MessageIds
from mailstrom_py.message.dkim import generate_key, txt_value
from mailstrom_py.message.envelope import AddressList, Envelope

HELO = "mx.example.org"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: Hi\r\n\r\nHello.\r\n"


@pytest.fixture(scope="module")
def key() -> DkimConfig:
    return generate_key("example.org", "s1", "ed25519-sha256")


class TestPreparer:
    def test_prepare_email_is_what_a_default_preparer_gives(self) -> None:
        """prepare_email() is Preparer(helo_name).prepare() with the same arguments."""
        arguments = {"now": NOW, "message_id": "m.1@example.org"}
        assert prepare_email(MESSAGE, helo_name=HELO, **arguments) == Preparer(
            HELO
        ).prepare(MESSAGE, **arguments)

    @pytest.mark.parametrize("message", [MESSAGE, MESSAGE.decode() + "Grüße\r\n"])
    def test_the_clock_dates_a_message_without_a_date(self, message: bytes) -> None:
        """Without a Date header or a time given, the preparer's clock gives it,
        on either path."""
        preparer = Preparer(HELO, clock=NOW.timestamp)
        prepared = preparer.prepare(message)
        assert b"\r\nDate: Mon, 06 May 2024 07:08:09 +0000\r\n" in prepared.data

    def test_message_ids_come_from_the_generator_it_is_given(self) -> None:
        """Two preparers with equally seeded generators give equal Message-IDs."""

        def first_id() -> str:
            ids = MessageIds(HELO, random.Random(7))
            return Preparer(HELO, message_ids=ids).prepare(MESSAGE).message_id

        assert first_id() == first_id()
        assert first_id().endswith("@mx.example.org")

    def test_a_tls_required_no_header_is_recorded(self) -> None:
        """RFC 8689: 'TLS-Required: No' makes the prepared message tls_optional."""
        message = MESSAGE.replace(b"Subject", b"TLS-Required: No\r\nSubject")
        assert prepare_email(message, helo_name=HELO).tls_optional
        assert not prepare_email(MESSAGE, helo_name=HELO).tls_optional

    def test_a_tls_required_header_saying_more_is_refused(self) -> None:
        """RFC 8689: TLS-Required says 'No' or nothing; REQUIRETLS is asked for
        with require_tls=True."""
        message = MESSAGE.replace(b"Subject", b"TLS-Required: Yes\r\nSubject")
        with pytest.raises(InvalidMessageError) as info:
            Preparer(HELO).prepare(message)
        assert info.value.field == "TLS-Required"
        assert Preparer(HELO).prepare(MESSAGE, require_tls=True).require_tls

    def test_a_preparer_from_a_config_signs_with_its_keys(
        self, key: DkimConfig
    ) -> None:
        """The last step signs: the signature verifies over the prepared bytes."""
        config = Config(
            helo_name=HELO, delivery=RelayConfig(host="relay.example.org"), dkim=key
        )
        prepared = Preparer.from_config(config).prepare(MESSAGE)
        assert prepared.data.startswith(b"DKIM-Signature:")
        record = txt_value(key).encode()
        assert dkim.verify(prepared.data, dnsfunc=lambda name, timeout=5: record)

    def test_a_preparer_without_keys_signs_nothing(self) -> None:
        """Without DKIM keys the prepared bytes are the message's own."""
        config = Config(helo_name=HELO, delivery=RelayConfig(host="relay.example.org"))
        prepared = Preparer.from_config(config).prepare(MESSAGE, now=NOW)
        assert prepared.data.startswith(b"From: a@example.org\r\n")


NO_FROM = b"To: b@example.org\r\nSubject: Hi\r\n\r\nHello.\r\n"
SENDER = "Example App <noreply@example.org>"


def headers_of(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


class TestDefaultFrom:
    @pytest.mark.parametrize(
        "message",
        [
            pytest.param(NO_FROM, id="fast path"),
            pytest.param(NO_FROM.decode() + "Grüße\r\n", id="full path"),
            pytest.param(message_from_bytes(NO_FROM, policy=default), id="object"),
        ],
    )
    def test_a_message_without_from_gets_the_default_sender(
        self, message: bytes | str | EmailMessage
    ) -> None:
        """On every path a message without From gets default_from as its From
        header, and the envelope sender is its address."""
        prepared = Preparer(HELO, default_from=SENDER).prepare(message)
        assert prepared.mail_from == "noreply@example.org"
        [line] = [h for h in headers_of(prepared.data) if h.startswith(b"From:")]
        assert line == b"From: Example App <noreply@example.org>"

    def test_a_message_with_a_from_keeps_it(self) -> None:
        """default_from never replaces a From the message has."""
        prepared = Preparer(HELO, default_from=SENDER).prepare(MESSAGE)
        assert prepared == Preparer(HELO).prepare(
            MESSAGE, now=_date_of(prepared), message_id=prepared.message_id
        )
        assert prepared.mail_from == "a@example.org"

    def test_a_given_envelope_sender_still_wins(self) -> None:
        """With mail_from given, the default From goes into the header only."""
        prepared = Preparer(HELO, default_from=SENDER).prepare(
            NO_FROM, mail_from="bounces@example.org"
        )
        assert prepared.mail_from == "bounces@example.org"
        assert b"From: Example App <noreply@example.org>" in prepared.data

    def test_a_non_ascii_display_name_is_encoded(self) -> None:
        """A default sender with a non-ASCII name and domain goes out as an
        encoded word and an A-label."""
        preparer = Preparer(HELO, default_from="Café <noreply@exämple.org>")
        prepared = preparer.prepare(NO_FROM)
        assert prepared.data.isascii()
        assert prepared.mail_from == "noreply@xn--exmple-cua.org"
        parsed = message_from_bytes(prepared.data, policy=default)
        assert str(parsed["From"]) == "Café <noreply@xn--exmple-cua.org>"

    def test_without_a_default_a_message_without_from_is_refused(self) -> None:
        """As before: no From and no default_from is an InvalidMessageError."""
        with pytest.raises(InvalidMessageError) as info:
            Preparer(HELO).prepare(NO_FROM)
        assert info.value.field == "From"

    @pytest.mark.parametrize(
        "value",
        ["a@example.org, b@example.org", "nobody", "team: a@example.org;", "a\nb"],
    )
    def test_a_default_that_is_not_one_mailbox_is_a_config_error(
        self, value: str
    ) -> None:
        """A default sender of several mailboxes, no address, a group or a line
        break is refused when the config or the preparer is built."""
        with pytest.raises(ConfigError) as info:
            Preparer.from_config(
                Config(HELO, RelayConfig("127.0.0.1"), default_from=value)
            )
        assert "default_from" in info.value.args

    def test_a_preparer_from_a_config_uses_its_default_sender(self) -> None:
        """Config.default_from reaches the preparer the mailer builds."""
        config = Config(HELO, RelayConfig("127.0.0.1"), default_from=SENDER)
        prepared = Preparer.from_config(config).prepare(NO_FROM)
        assert prepared.mail_from == "noreply@example.org"


@pytest.mark.parametrize("cls", [PreparedEmail, Envelope, AddressList])
def test_a_written_out_init_is_the_dataclass_one(cls: type) -> None:
    """PreparedEmail, Envelope and AddressList write their dataclass
    ``__init__`` out (it runs for every message prepared): it takes every
    field, in order, with the field's default, sets each of them and nothing
    else, and leaves the instance frozen and equal to its copies."""
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        for f in fields
    ]
    values = {f.name: object() for f in fields}
    built = cls(*values.values())
    assert {f.name: getattr(built, f.name) for f in fields} == values
    assert not hasattr(built, "__dict__") or vars(built) == values
    assert dataclasses.replace(built) == built
    assert cls(**values) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, fields[0].name, None)


def _date_of(prepared: PreparedEmail) -> datetime:
    parsed = message_from_bytes(prepared.data, policy=default)
    return parsed["Date"].datetime  # type: ignore[no-any-return]
