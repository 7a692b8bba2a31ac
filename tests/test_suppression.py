"""The suppression list: a hard bounce suppresses the address, later mail to it
fails at once without a connection, and a delivery or a command removes it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.smtpd import SmtpServer, SmtpServerFactory

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    MemoryStorage,
    Outbox,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Storage,
    Suppression,
    Suspension,
    Timeouts,
)
from mailstrom_py.codes import RECIPIENT_SUPPRESSED
from mailstrom_py.config import SuppressionPolicy
from mailstrom_py.dashboard.controls import apply_control
from mailstrom_py.delivery import RelayTransport
from mailstrom_py.errors import ConfigError
from mailstrom_py.storage.controls import Controls

DAY = 86400.0


def config_for(server: SmtpServer, **kwargs: object) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=60, jitter=0.0),
        timeouts=Timeouts.uniform(5),
        session_max_messages=1,
        **kwargs,  # type: ignore[arg-type]
    )


def message(to: str) -> bytes:
    return (
        f"From: app@example.test\r\nTo: {to}\r\nSubject: hi\r\n\r\nbody\r\n"
    ).encode()


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "memory":
        return MemoryStorage()
    return SqliteStorage(tmp_path / "outbox.db")


def test_a_550_5_1_1_suppresses_and_the_next_message_opens_no_connection(
    smtp_server: SmtpServerFactory, storage: Storage
) -> None:
    """The server refuses p5gone with 550 5.1.1: the address is suppressed, and
    a second message to it fails that recipient with 5.7.1 without a
    connection, while its other recipient is delivered."""
    server = smtp_server()
    clock = [1_000_000.0]
    with Mailstrom(config_for(server), storage, clock=lambda: clock[0]) as mailer:
        first = mailer.send_email(message("p5gone@example.test"))
        bounced = mailer.wait(first).recipient("p5gone@example.test")
        assert bounced.result is DeliveryResult.FAILED
        assert bounced.status_code == "5.1.1"
        [entry] = mailer.suppressions()
        assert entry.address == "p5gone@example.test"
        assert entry.reason == "550 5.1.1 no such user"
        assert entry.until == entry.since + 30 * DAY
        connections = server.handler.connections

        second = mailer.send_email(message("P5Gone@example.test"))
        refused = mailer.wait(second).recipient("P5Gone@example.test")
        assert refused.result is DeliveryResult.FAILED
        assert refused.status_code == RECIPIENT_SUPPRESSED
        assert refused.detail is not None
        assert refused.detail.startswith("suppressed since ")
        assert refused.detail.endswith(" after 550 5.1.1 no such user")
        assert refused.last_reply is None
        assert server.handler.connections == connections

        both = mailer.send_email(message("p5gone@example.test, ok@example.test"))
        status = mailer.wait(both)
        assert status.recipient("ok@example.test").result is DeliveryResult.DELIVERED
        assert status.recipient("p5gone@example.test").status_code == "5.7.1"
        assert [list(m.rcpt_tos) for m in server.handler.messages] == [
            ["ok@example.test"]
        ]


def test_a_delivery_or_a_command_removes_the_entry(
    smtp_server: SmtpServerFactory, storage: Storage
) -> None:
    """An entry made by hand stops mail; unsuppress() lets it through again,
    and a delivery to an address takes its entry off the list."""
    server = smtp_server()
    with Mailstrom(config_for(server), storage) as mailer:
        entry = mailer.suppress("Someone@Example.test", reason="a complaint")
        assert entry.address == "someone@example.test"
        refused = mailer.wait(mailer.send_email(message("someone@example.test")))
        detail = refused.recipients[0].detail
        assert detail is not None and detail.endswith("after a complaint")
        assert server.handler.connections == 0

        assert mailer.unsuppress("someone@example.test") is True
        assert mailer.unsuppress("someone@example.test") is False
        sent = mailer.wait(mailer.send_email(message("someone@example.test")))
        assert sent.recipients[0].result is DeliveryResult.DELIVERED


def test_the_list_is_checked_when_claimed_not_when_queued(
    smtp_server: SmtpServerFactory, storage: Storage
) -> None:
    """Mail queued before its address was suppressed is refused when its
    attempt comes: the list is read at claim time."""
    server = smtp_server()
    mailer = Mailstrom(config_for(server), storage, clock=lambda: 5000.0)
    try:
        queued = mailer.send_email(message("late@example.test"))
        mailer.suppress("late@example.test")
        assert mailer.run_once(5000.0) == 1
        status = mailer.query_status(queued)
        assert status.recipients[0].status_code == RECIPIENT_SUPPRESSED
        assert server.handler.connections == 0
    finally:
        mailer.stop()


def test_entries_end_by_themselves(smtp_server: SmtpServerFactory) -> None:
    """An entry past its duration no longer stops mail."""
    server = smtp_server()
    clock = [1000.0]
    policy = SuppressionPolicy(duration=60.0)
    mailer = Mailstrom(
        config_for(server, suppression=policy), MemoryStorage(), clock=lambda: clock[0]
    )
    try:
        mailer.suppress("x@example.test")
        clock[0] = 1061.0
        queued = mailer.send_email(message("x@example.test"))
        mailer.run_once(1061.0)
        status = mailer.query_status(queued)
        assert status.recipients[0].result is DeliveryResult.DELIVERED
        assert mailer.suppressions() == []
    finally:
        mailer.stop()


def test_a_disabled_policy_neither_adds_nor_checks(
    smtp_server: SmtpServerFactory,
) -> None:
    """With enabled=False a 5.1.1 suppresses nothing, and entries are ignored."""
    server = smtp_server()
    config = config_for(server, suppression=SuppressionPolicy(enabled=False))
    with Mailstrom(config, MemoryStorage()) as mailer:
        mailer.wait(mailer.send_email(message("p5gone@example.test")))
        assert mailer.suppressions() == []
        mailer.suppress("x@example.test")
        sent = mailer.wait(mailer.send_email(message("x@example.test")))
        assert sent.recipients[0].result is DeliveryResult.DELIVERED


def test_only_the_policys_codes_suppress(smtp_server: SmtpServerFactory) -> None:
    """A 550 5.1.1 suppresses nothing when the policy lists other codes, and a
    policy with a code that is not permanent, or no duration, is refused."""
    server = smtp_server()
    policy = SuppressionPolicy(codes=("5.1.6",))
    with Mailstrom(config_for(server, suppression=policy), MemoryStorage()) as mailer:
        status = mailer.wait(mailer.send_email(message("p5gone@example.test")))
        assert status.recipients[0].status_code == "5.1.1"
        assert mailer.suppressions() == []
    with pytest.raises(ConfigError, match="codes"):
        SuppressionPolicy(codes=("4.1.1",))
    with pytest.raises(ConfigError, match="duration"):
        SuppressionPolicy(duration=0)


def test_a_delivery_takes_an_address_off_the_list(
    smtp_server: SmtpServerFactory, storage: Storage
) -> None:
    """An address suppressed while its message's attempt is under way (after
    the list was read) is delivered, and that delivery removes the entry."""
    server = smtp_server()
    config = config_for(server)

    class SuppressingMidway(RelayTransport):
        """Suppresses the recipient of the batch it delivers, once the list
        was read."""

        def deliver_many(self, batch, on_outcome=None):  # type: ignore[no-untyped-def]
            now = time.time()
            assert isinstance(storage, Controls)
            storage.suppress(
                [Suppression(to, "550 5.1.1 gone", now, now + 60) for _, [to] in batch]
            )
            return super().deliver_many(batch, on_outcome)

    transport = SuppressingMidway(
        config.delivery,  # type: ignore[arg-type]
        helo_name=config.helo_name,
        timeouts=config.timeouts,
    )
    with Mailstrom(config, storage, transport=transport) as mailer:
        sent = mailer.send_email(message("late@example.test"))
        assert mailer.wait(sent).succeeded
        deadline = time.monotonic() + 5
        while mailer.suppressions() and time.monotonic() < deadline:
            time.sleep(0.01)  # the list is updated once the batch is recorded
        assert mailer.suppressions() == []


def test_a_recipient_refused_as_suppressed_is_told_as_a_suppressed_event(
    smtp_server: SmtpServerFactory, storage: Storage
) -> None:
    """Listeners hear ``suppressed`` and then ``failed`` for a recipient on the
    list, and only ``failed`` for a recipient the server refused."""
    server = smtp_server()
    heard: list[tuple[str, str | None]] = []
    with Mailstrom(config_for(server), storage) as mailer:
        mailer.subscribe(lambda event: heard.append((event.kind, event.recipient)))
        mailer.wait(mailer.send_email(message("p5gone@example.test")))
        mailer.wait(mailer.send_email(message("p5gone@example.test")))
        mailer.flush(5)
    outcomes = [kind for kind, to in heard if to and kind not in ("queued", "tls")]
    assert [k for k in outcomes if k != "attempt_started"] == [
        "failed",
        "suppressed",
        "failed",
    ]


class TestEntriesMadeAlike:
    """Suppression.lasting and Suspension.lasting are the one way an entry is
    made from what a person typed: the Outbox, the dashboard and the command
    line (tests/test_cli_controls.py) give the same entry for the same words."""

    def test_the_outbox_and_the_dashboard_make_the_same_entries(self) -> None:
        """A padded mixed-case address or destination is folded, and the
        duration counts from the caller's now, on every path."""
        now = 1_000_000.0
        outbox = Outbox(
            Config(helo_name="client.example.test", delivery=RelayConfig("relay.test")),
            MemoryStorage(),
            clock=lambda: now,
        )
        from_outbox = [
            outbox.suppress(" Bob@Example.TEST ", reason="complaint", duration=DAY),
            outbox.suspend(" Gmail ", 3600, reason="slow down"),
        ]
        board = MemoryStorage()
        apply_control(
            board,
            "suppress",
            {"address": " Bob@Example.TEST ", "days": "1", "reason": "complaint"},
            now,
            "alice",
        )
        apply_control(
            board,
            "suspend",
            {"destination": " Gmail ", "minutes": "60", "reason": "slow down"},
            now,
            "alice",
        )
        from_board = [*board.suppressions(now), *board.suspensions(now)]
        assert from_board == from_outbox
        assert from_outbox == [
            Suppression("bob@example.test", "complaint", now, now + DAY),
            Suspension("gmail", "slow down", now, now + 3600),
        ]
        assert apply_control(board, "resume", {"destination": "GMAIL "}, now, "a")[
            "changed"
        ]

    @pytest.mark.parametrize("duration", [0, -1.0, float("nan"), float("inf"), True])
    def test_a_duration_that_is_no_span_is_refused(self, duration: float) -> None:
        """Zero, negative, NaN, infinite or a bool: ConfigError naming the
        duration, for either kind of entry."""
        with pytest.raises(ConfigError) as suppressing:
            Suppression.lasting("a@example.test", "r", 0.0, duration)
        with pytest.raises(ConfigError) as suspending:
            Suspension.lasting("relay", "r", 0.0, duration)
        assert suppressing.value.args[1] == suspending.value.args[1] == "duration"
