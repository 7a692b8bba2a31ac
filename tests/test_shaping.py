"""Traffic shaping per destination, against loopback servers: a rate with
bursts, a bound on connections at once, and replies that suspend a
destination, whose queued mail then waits without spending its attempts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support.mxnet import MxNet
from support.smtpd import RecordingHandler, SessionRecord, SmtpServer, SmtpServerFactory

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    MemoryStorage,
    QueueFilter,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    SuppressionPolicy,
    Suspension,
    Timeouts,
    config_from_mapping,
)
from mailstrom_py.codes import DESTINATION_HELD
from mailstrom_py.config import DestinationLimits, ReplyRule, ShapingConfig
from mailstrom_py.delivery import Outcome
from mailstrom_py.delivery.shaping import Gcra, Shaper
from mailstrom_py.errors import ConfigError
from mailstrom_py.status import SmtpReply, SmtpStep


class CountingHandler(RecordingHandler):
    """Records, besides, the most connections open at once."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._open: set[int] = set()
        self._records: list[SessionRecord] = []
        self._count_lock = threading.Lock()
        self.most_at_once = 0

    def session_opened(self, record: SessionRecord) -> None:
        with self._count_lock:
            self._records.append(record)
            self._open.add(id(record))
            self.most_at_once = max(self.most_at_once, len(self._open))
        super().session_opened(record)

    def session_event(self) -> None:
        with self._count_lock:
            for record in self._records:
                if record.closed:
                    self._open.discard(id(record))
        super().session_event()


def config_for(server: SmtpServer, shaping: ShapingConfig, threads: int = 4) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=60, jitter=0.0),
        timeouts=Timeouts.uniform(5),
        delivery_threads=threads,
        session_max_messages=3,
        shaping=shaping,
    )


def message(to: str, n: int = 0) -> bytes:
    return (
        f"From: app@example.test\r\nTo: {to}\r\nSubject: n{n}\r\n\r\nbody\r\n"
    ).encode()


def test_ten_a_second_with_a_burst_of_one_takes_two_seconds_for_twenty(
    smtp_server: SmtpServerFactory,
) -> None:
    """The relay limited to 10 messages a second, burst 1, and 2 connections:
    20 messages over 4 delivery threads take about 2 s (one every 0.1 s), and
    the server never sees more than 2 connections at once; every message is
    delivered at its first attempt."""
    handler = CountingHandler(data_delay=0.02)
    server = smtp_server(handler=handler)
    relay = DestinationLimits(name="relay", rate=10, per=1.0, burst=1, connections=2)
    shaping = ShapingConfig(destinations=(relay,), max_wait=5.0)
    mailer = Mailstrom(config_for(server, shaping), MemoryStorage())
    ids = [mailer.send_email(message(f"r{n}@example.test", n)) for n in range(20)]
    started = time.monotonic()
    with mailer:
        statuses = [mailer.wait(i, timeout=30) for i in ids]
        elapsed = time.monotonic() - started
    assert all(s.succeeded for s in statuses)
    assert {r.attempts for s in statuses for r in s.recipients} == {1}
    assert 1.7 <= elapsed <= 6.0, elapsed
    assert 1 <= handler.most_at_once <= 2
    assert handler.connections >= 20 // 3  # 3 messages per connection at most


def test_without_a_rate_the_same_mail_goes_at_once(
    smtp_server: SmtpServerFactory,
) -> None:
    """The control: with no rate the 20 messages take well under a second."""
    server = smtp_server(handler=CountingHandler())
    mailer = Mailstrom(config_for(server, ShapingConfig()), MemoryStorage())
    ids = [mailer.send_email(message(f"r{n}@example.test", n)) for n in range(20)]
    started = time.monotonic()
    with mailer:
        assert all(mailer.wait(i, timeout=30).succeeded for i in ids)
        assert time.monotonic() - started < 1.5


def test_a_421_4_7_28_suspends_the_destination_and_attempts_are_kept(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    """Gmail's 421 4.7.28 (a shipped rule) suspends the relay for an hour:
    the suspension is kept in storage, and queued messages, one attempted
    before and one never, are deferred until it ends with their attempt
    counts as they were and no connection made. Resumed, they go out."""
    handler = CountingHandler()
    server = smtp_server(handler=handler)
    clock = time.time
    storage = SqliteStorage(tmp_path / "outbox.db")
    mailer = Mailstrom(config_for(server, ShapingConfig(), threads=1), storage)
    try:
        busy = mailer.send_email(message("t4busy@example.test", 1))
        mailer.run_once()
        [tried] = mailer.query_status(busy).recipients
        assert tried.attempts == 1

        handler.mail_reply = "421 4.7.28 unusual rate of unsolicited mail"
        first = mailer.send_email(message("a@example.test", 2))
        mailer.run_once()
        [r] = mailer.query_status(first).recipients
        assert (r.result, r.attempts, r.status_code) == (
            DeliveryResult.DEFERRED,
            1,
            "4.7.28",
        )
        [suspension] = mailer.suspensions()
        assert suspension.destination == "relay"
        assert suspension.reason.startswith("after 421 4.7.28 unusual rate")
        assert 3590 < suspension.until - clock() <= 3600

        handler.mail_reply = None
        connections = handler.connections
        waiting = mailer.send_email(message("b@example.test", 3))
        mailer.kick(QueueFilter(ids=(busy,)))
        assert mailer.run_once() == 2
        for message_id, attempts, last in (
            (busy, 1, tried.last_attempt_at),
            (waiting, 0, None),
        ):
            [held] = mailer.query_status(message_id).recipients
            assert held.result is DeliveryResult.DEFERRED
            assert (held.attempts, held.last_attempt_at) == (attempts, last)
            assert held.status_code == DESTINATION_HELD
            assert held.detail == (f"destination relay suspended: {suspension.reason}")
            assert held.next_attempt_at == suspension.until
        assert handler.connections == connections

        assert mailer.resume("relay") is True
        mailer.kick(QueueFilter(ids=(waiting,)))
        mailer.run_once()
        [sent] = mailer.query_status(waiting).recipients
        assert (sent.result, sent.attempts) == (DeliveryResult.DELIVERED, 1)
    finally:
        mailer.stop()


def test_a_suspension_made_in_another_process_holds_this_workers_mail(
    smtp_server: SmtpServerFactory, tmp_path: Path
) -> None:
    """A suspension written to the storage file by another opener (as
    ``mailstrom-py destination suspend`` does) holds the worker's mail; once
    it is removed there, the mail goes out."""
    server = smtp_server()
    db = tmp_path / "outbox.db"
    mailer = Mailstrom(
        config_for(server, ShapingConfig(), threads=1), SqliteStorage(db)
    )
    other = SqliteStorage(db)
    try:
        now = time.time()
        other.suspend(Suspension("relay", "maintenance", now, now + 600))
        queued = mailer.send_email(message("a@example.test"))
        mailer.run_once()
        [held] = mailer.query_status(queued).recipients
        assert (held.status_code, held.attempts) == (DESTINATION_HELD, 0)
        assert server.handler.connections == 0
        assert other.resume("relay")
        mailer.kick(QueueFilter(ids=(queued,)))
        mailer.run_once()
        assert mailer.query_status(queued).succeeded
    finally:
        other.close()
        mailer.stop()


class TestDestinations:
    """Which destination a delivery goes to, and under which limits."""

    def test_domains_sharing_exchangers_share_one_destination(self) -> None:
        """Two domains with the same exchangers (in any order) are one
        destination, named by the exchangers; its limits are the defaults."""
        shaper = Shaper(ShapingConfig(presets=False), connections=7)
        a = shaper.for_exchangers(["mx2.host.test", "MX1.host.test."], "a.test")
        b = shaper.for_exchangers(["mx1.host.test", "mx2.host.test"], "b.test")
        assert a.name == b.name == "mx1.host.test,mx2.host.test"
        assert a.limits.connections == 7
        assert shaper.for_exchangers([], "c.test").name == "c.test"

    def test_presets_are_recognised_by_their_exchangers(self) -> None:
        """Google's exchangers are the "gmail" preset, 5 connections and 50
        messages each; a configured destination of the same name replaces it."""
        hosts = ["gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"]
        gmail = Shaper(ShapingConfig()).for_exchangers(hosts, "gmail.com")
        assert (gmail.name, gmail.limits.connections) == ("gmail", 5)
        assert gmail.limits.messages_per_connection == 50
        mine = DestinationLimits(name="gmail", mx_suffixes=(".google.com",), rate=2)
        shaper = Shaper(ShapingConfig(destinations=(mine,)), connections=9)
        replaced = shaper.for_exchangers(hosts, "example.org")
        assert (replaced.limits.rate, replaced.limits.connections) == (2, 9)
        mixed = Shaper(ShapingConfig()).for_exchangers(
            ["aspmx.l.google.com", "mx.other.test"], "mixed.test"
        )
        assert mixed.name == "aspmx.l.google.com,mx.other.test"

    def test_a_microsoft_4_7_650_slows_the_destination(self) -> None:
        """The shipped rule for 451 4.7.650 slows the destination to one
        message a minute over one connection: the next turn is a minute off."""
        shaper = Shaper(ShapingConfig(max_wait=0.5), sleep=lambda s: None)
        dest = shaper.for_exchangers(["x.mail.protection.outlook.com"], "o.test")
        assert dest.name == "outlook" and not shaper.paced(dest)
        reply = SmtpReply(451, "4.7.650", "rate limited (S843)", SmtpStep.RCPT)
        shaper.observe(
            dest, [Outcome("a@o.test", DeliveryResult.DEFERRED, "4.7.650", "", reply)]
        )
        assert shaper.paced(dest)
        assert shaper.turn(dest) is None  # the first turn is free
        hold = shaper.turn(dest)
        assert hold is not None and 55 < hold.until - time.time() <= 121


class TestGcra:
    def test_a_burst_goes_at_once_then_the_rate_spaces(self) -> None:
        """Burst 3 at 10 a second: three turns at once, then 0.1 s apart; a
        turn further off than the wait allowed is not taken."""
        rate = Gcra(10, 1.0, 3)
        assert [rate.reserve(100.0, 1.0) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert rate.reserve(100.0, 1.0) == pytest.approx(0.1)
        assert rate.reserve(100.0, 1.0) == pytest.approx(0.2)
        assert rate.reserve(100.0, 0.25) is None
        assert rate.free_at(100.0) == pytest.approx(0.3)
        assert rate.reserve(110.0, 0.0) == 0.0  # a quiet spell refills


def test_bad_limits_are_refused() -> None:
    """Each value is checked when the configuration is built."""
    with pytest.raises(ConfigError, match="rate"):
        DestinationLimits(rate=0)
    with pytest.raises(ConfigError, match="name"):
        DestinationLimits(name="Has Space")
    with pytest.raises(ConfigError, match="pattern"):
        ReplyRule(pattern="(")
    with pytest.raises(ConfigError, match="destinations"):
        ShapingConfig(
            destinations=(DestinationLimits(name="x"), DestinationLimits(name="x"))
        )


def direct_config(net: MxNet, shaping: ShapingConfig) -> Config:
    return Config(
        helo_name="client.test",
        delivery=net.resolver_config(),
        retry=RetryPolicy(initial_delay=60, jitter=0.0),
        timeouts=Timeouts.uniform(5),
        delivery_threads=4,
        shaping=shaping,
    )


def test_domains_on_one_exchanger_share_its_connection_limit(net: MxNet) -> None:
    """a.test and b.test have the same exchanger: one destination. With one
    connection allowed per destination, mail to both domains over four
    delivery threads never has two connections open at once there; a
    suspended recipient domain is held while the other is delivered."""
    handler = CountingHandler(data_delay=0.05)
    net.mx("a.test", (10, "mx.shared.test", "127.0.0.2"))
    net.mx("b.test", (10, "mx.shared.test", "127.0.0.2"))
    net.smtp("127.0.0.2", handler=handler)
    shaping = ShapingConfig(default=DestinationLimits(connections=1), presets=False)
    mailer = Mailstrom(direct_config(net, shaping), MemoryStorage())
    ids = [mailer.send_email(message(f"r{n}@{'ab'[n % 2]}.test", n)) for n in range(8)]
    with mailer:
        assert all(mailer.wait(i, timeout=30).succeeded for i in ids)
        assert handler.most_at_once == 1
        mailer.suspend("b.test", 600)
        to_a = mailer.send_email(message("x@a.test"))
        to_b = mailer.send_email(message("y@b.test"))
        assert mailer.wait(to_a, timeout=30).succeeded
        [held] = mailer.wait(to_b, timeout=30).recipients
        assert (held.status_code, held.attempts) == (DESTINATION_HELD, 0)
        assert held.detail == "destination b.test suspended: a command"


def test_the_configuration_file_gives_every_shaping_and_suppression_key() -> None:
    """``[shaping]`` with its default, destinations and rules, and
    ``[suppression]``, load from a file's tables, durations included."""
    loaded = config_from_mapping(
        {
            "helo_name": "app.example.org",
            "delivery": {"kind": "direct"},
            "suppression": {"duration": "7d", "codes": ["5.1.1", "5.2.1"]},
            "shaping": {
                "max_wait": "2s",
                "presets": False,
                "default": {"connections": 10, "messages_per_connection": 40},
                "destinations": [
                    {
                        "name": "gmail",
                        "mx_suffixes": [".google.com"],
                        "rate": 600,
                        "per": "1m",
                        "burst": 20,
                    }
                ],
                "rules": [
                    {"pattern": r"^421 4\.7\.28\b", "duration": "2h"},
                    {"pattern": "TS04", "action": "slow", "rate": 2, "per": "1m"},
                ],
            },
        }
    )
    config = loaded.config
    assert config.suppression == SuppressionPolicy(
        duration=7 * 86400.0, codes=("5.1.1", "5.2.1")
    )
    shaping = config.shaping
    assert (shaping.max_wait, shaping.presets) == (2.0, False)
    assert shaping.default == DestinationLimits(
        connections=10, messages_per_connection=40
    )
    assert shaping.named == (
        DestinationLimits(
            name="gmail", mx_suffixes=(".google.com",), rate=600, per=60.0, burst=20
        ),
    )
    assert shaping.rules == (
        ReplyRule(pattern=r"^421 4\.7\.28\b", duration=7200.0),
        ReplyRule(pattern="TS04", action="slow", rate=2, per=60.0),
    )
    with pytest.raises(ConfigError, match=r"shaping\.rules\[0\]\.action"):
        config_from_mapping(
            {
                "helo_name": "app.example.org",
                "delivery": {"kind": "direct"},
                "shaping": {"rules": [{"pattern": "x", "action": "pause"}]},
            }
        )
