"""Status values: parsing replies and deriving message-level facts."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from mailstrom_py import (
    DeliveryResult,
    Event,
    MessageStatus,
    RecipientStatus,
    Remote,
    SmtpReply,
    SmtpStep,
)
from mailstrom_py.delivery import Outcome
from mailstrom_py.storage import Claim


class TestSmtpReply:
    def test_enhanced_code_is_split_off(self) -> None:
        """An RFC 3463 code opening the text becomes its own field."""
        reply = SmtpReply.parse(550, b"5.1.1 <x@y.test>: no such user")
        assert reply == SmtpReply(550, "5.1.1", "<x@y.test>: no such user")
        assert str(reply) == "550 5.1.1 <x@y.test>: no such user"

    def test_text_without_enhanced_code_is_kept_whole(self) -> None:
        """A reply without an enhanced code keeps all of its text."""
        assert SmtpReply.parse(250, "ok") == SmtpReply(250, None, "ok")

    def test_version_like_text_is_not_an_enhanced_code(self) -> None:
        """Only class 2, 4 or 5 codes count: '1.2.3 text' stays text."""
        assert SmtpReply.parse(250, "1.2.3 text").enhanced is None

    def test_a_reply_keeps_the_step_it_answered(self) -> None:
        """The same words answering two steps are two replies, each naming its
        step in the words a person reads ("RCPT", "end of data")."""
        rcpt = SmtpReply.parse(250, b"2.0.0 ok", SmtpStep.RCPT)
        dot = SmtpReply.parse(250, b"2.0.0 ok", SmtpStep.END_OF_DATA)
        assert (rcpt.step, dot.step) == ("RCPT", "end of data")
        assert rcpt != dot and str(rcpt) == str(dot) == "250 2.0.0 ok"
        assert SmtpReply.parse(250, "ok").step is None


def _status(*results: DeliveryResult) -> MessageStatus:
    recipients = tuple(
        RecipientStatus(f"r{i}@example.test", result, next_attempt_at=float(10 - i))
        for i, result in enumerate(results)
    )
    return MessageStatus("id@example.test", recipients, created_at=0.0)


class TestMessageStatus:
    def test_completed_when_every_recipient_is_final(self) -> None:
        """A message is completed once all recipients are delivered or failed."""
        assert _status(DeliveryResult.DELIVERED, DeliveryResult.FAILED).completed
        assert not _status(DeliveryResult.DELIVERED, DeliveryResult.DEFERRED).completed

    def test_succeeded_only_when_all_delivered(self) -> None:
        """One failed recipient means the message did not succeed."""
        assert _status(DeliveryResult.DELIVERED).succeeded
        assert not _status(DeliveryResult.DELIVERED, DeliveryResult.FAILED).succeeded

    def test_next_attempt_is_the_earliest_pending(self) -> None:
        """The message is due when its earliest pending recipient is."""
        status = _status(
            DeliveryResult.DELIVERED, DeliveryResult.QUEUED, DeliveryResult.DEFERRED
        )
        assert status.next_attempt_at == 8.0

    @pytest.mark.parametrize(
        "results",
        [
            (),
            (DeliveryResult.DELIVERED, DeliveryResult.FAILED),
            (DeliveryResult.DEFERRED,),
            (DeliveryResult.DELIVERED, DeliveryResult.QUEUED, DeliveryResult.DEFERRED),
            (DeliveryResult.QUEUED, DeliveryResult.FAILED, DeliveryResult.QUEUED),
        ],
    )
    def test_derived_values_worked_out_at_once_are_those_of_first_use(
        self, results: tuple[DeliveryResult, ...]
    ) -> None:
        """A status made by ``with_derived`` equals the constructor's, and its
        pending recipients, completion and next attempt, worked out at once,
        are those worked out on first use (a recipient without a next
        attempt left out of the earliest)."""
        lazy = _status(*results)
        recipients = (*lazy.recipients, RecipientStatus("late@example.test"))
        lazy = MessageStatus("id@example.test", recipients, 0.0, True, 5.0)
        eager = MessageStatus.with_derived(
            "id@example.test", recipients, 0.0, True, 5.0
        )
        assert eager == lazy
        for name in ("pending", "completed", "next_attempt_at"):
            assert name in vars(eager)
            assert getattr(eager, name) == getattr(lazy, name), name

    def test_statuses_are_frozen(self) -> None:
        """Status values cannot be changed in place."""
        status = _status(DeliveryResult.QUEUED)
        with pytest.raises(dataclasses.FrozenInstanceError):
            status.recipients[0].attempts = 3  # type: ignore[misc]

    def test_recipient_lookup(self) -> None:
        """recipient() finds a status by address and raises KeyError otherwise."""
        status = _status(DeliveryResult.QUEUED)
        assert status.recipient("r0@example.test").result is DeliveryResult.QUEUED
        with pytest.raises(KeyError):
            status.recipient("nobody@example.test")


@pytest.mark.parametrize("cls", [RecipientStatus, MessageStatus, Event, Outcome, Claim])
def test_a_written_out_init_is_the_dataclass_one(cls: type) -> None:
    """RecipientStatus, Event, Outcome and Claim write their dataclass
    ``__init__`` out (it runs for every delivery): it takes every
    field, in order, with the
    field's default, sets each of them and nothing else, and leaves the
    instance frozen."""
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        for f in fields
    ]
    values = {f.name: object() for f in fields}
    built = cls(*values.values())
    assert vars(built) == values
    assert dataclasses.replace(built) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, fields[0].name, None)


def test_a_server_as_json_names_every_attribute() -> None:
    """Remote.as_json() has one key per attribute, each the attribute's value
    (the policy strings as a list), so a field added later cannot be left out
    of the command line's and the dashboard's JSON."""
    remote = Remote(
        "mx.example.test",
        "127.0.0.1",
        25,
        tls_version="TLSv1.3",
        tls_verified=True,
        tls_policy="tlsa",
        tls_policy_domain="mx.example.test",
        tls_result="validation-failure",
        tls_failure="no TLSA record matched",
        tls_policy_strings=("3 1 1 ab12",),
    )
    shown = remote.as_json()
    assert list(shown) == [f.name for f in dataclasses.fields(Remote)]
    expected = dataclasses.asdict(remote)
    expected["tls_policy_strings"] = ["3 1 1 ab12"]
    assert shown == expected
