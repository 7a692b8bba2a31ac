"""The contract for adding messages: one, a batch, and many threads at once."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

from ...errors import DuplicateMessageError, MessageNotFound
from ...status import DeliveryResult
from ...storage import QueueFilter
from .common import Backend, email

__all__ = ["AddContract", "AddManyContract", "ConcurrencyContract"]


class AddContract:
    """add(), status() and email(): what is stored comes back unchanged."""

    def test_new_message_has_every_recipient_queued_and_due(
        self, storage: Backend
    ) -> None:
        """add() stores each recipient QUEUED, due at the time of adding."""
        status = storage.add(email(), now=100.0)
        assert status.created_at == 100.0
        assert [r.address for r in status.recipients] == [
            "a@example.test",
            "b@example.test",
        ]
        assert all(r.result is DeliveryResult.QUEUED for r in status.recipients)
        assert all(
            r.attempts == 0 and r.next_attempt_at == 100.0 for r in status.recipients
        )
        assert storage.status("m1@example.test") == status

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"smtputf8": True, "eight_bit": True},
            {"require_tls": True},
            {"tls_optional": True},
            {"mail_from": ""},
        ],
    )
    def test_the_message_comes_back_unchanged(
        self, storage: Backend, options: dict[str, Any]
    ) -> None:
        """email() returns the prepared message exactly as added, every field of it."""
        original = dataclasses.replace(
            email(recipients=("b@example.test", "a@example.test")), **options
        )
        storage.add(original, now=0.0)
        assert storage.email(original.message_id) == original

    def test_duplicate_id_is_refused_and_changes_nothing(
        self, storage: Backend
    ) -> None:
        """A second message with the same id raises and leaves the first intact."""
        first = storage.add(email(), now=1.0)
        with pytest.raises(DuplicateMessageError):
            storage.add(
                dataclasses.replace(email(), recipients=("z@example.test",)), now=2.0
            )
        assert storage.status("m1@example.test") == first

    def test_unknown_id_raises_message_not_found(self, storage: Backend) -> None:
        """Looking up an id never stored raises MessageNotFound, a LookupError."""
        with pytest.raises(MessageNotFound):
            storage.status("nope@example.test")
        with pytest.raises(LookupError):
            storage.email("nope@example.test")


class AddManyContract:
    """add_many(): a batch is stored whole or not at all."""

    def test_a_batch_is_stored_in_order(self, storage: Backend) -> None:
        """add_many() stores every message, returning statuses in input order."""
        statuses = storage.add_many([email(3), email(1), email(2)], now=5.0)
        assert [s.message_id for s in statuses] == [
            "m3@example.test",
            "m1@example.test",
            "m2@example.test",
        ]
        assert storage.count(QueueFilter()) == 3
        assert storage.email("m2@example.test") == email(2)

    def test_a_stored_id_in_the_batch_stores_nothing(self, storage: Backend) -> None:
        """One id already stored makes the whole batch fail, and none is added."""
        storage.add(email(2), now=0.0)
        with pytest.raises(DuplicateMessageError):
            storage.add_many([email(1), email(2), email(3)], now=1.0)
        assert storage.count(QueueFilter()) == 1
        with pytest.raises(MessageNotFound):
            storage.status("m1@example.test")

    def test_an_id_repeated_in_the_batch_stores_nothing(self, storage: Backend) -> None:
        """Two messages with one id in a batch fail it before anything is stored."""
        with pytest.raises(DuplicateMessageError):
            storage.add_many([email(1), email(2), email(1)], now=1.0)
        assert storage.count(QueueFilter()) == 0


class ConcurrencyContract:
    """Many threads at once lose nothing."""

    def test_concurrent_adds_all_land(self, storage: Backend) -> None:
        """Many threads adding at once lose nothing and mix nothing up."""

        def add_range(start: int) -> None:
            for n in range(start, start + 50):
                storage.add(email(n), now=float(n))

        threads = [threading.Thread(target=add_range, args=(k * 50,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert storage.count(QueueFilter()) == 400
        assert len(storage.claim_due(now=1e12, limit=1000, lease=60.0)) == 400
        assert storage.email("m399@example.test").data.endswith(b"body 399\r\n")
