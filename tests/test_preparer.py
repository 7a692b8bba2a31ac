"""Preparer: one way in for every message, with its policy, clock and Message-IDs."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import dkim
import pytest

from mailstrom_py import Config, DkimConfig, InvalidMessageError, RelayConfig
from mailstrom_py.message import Preparer, prepare_email
from mailstrom_py.message.completion import MessageIds
from mailstrom_py.message.dkim import generate_key, txt_value

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
