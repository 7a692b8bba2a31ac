"""Trouble that stops delivery is logged at WARNING, once a minute per
destination and cause, against real loopback servers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
import trustme
from support.scripted import refusing
from support.smtpd import SmtpServer
from support.tls import client_context, server_context

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    RelayConfig,
    RetryPolicy,
    Timeouts,
)
from mailstrom_py.delivery import RelayTransport
from mailstrom_py.lograte import WarningRate

NOW = 1_700_000_000.0


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def relay_mailer(relay: RelayConfig, clock: Clock) -> Mailstrom:
    config = Config(
        helo_name="client.example.test",
        delivery=relay,
        retry=RetryPolicy(initial_delay=600, jitter=0.0, max_age=86_400),
        timeouts=Timeouts.uniform(5),
    )
    transport = RelayTransport(
        relay, helo_name=config.helo_name, timeouts=config.timeouts, clock=clock
    )
    return Mailstrom(config, transport=transport, clock=lambda: NOW)


def message(to: str) -> bytes:
    return f"From: s@example.test\r\nTo: {to}\r\nSubject: t\r\n\r\nbody\r\n".encode()


def warnings(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == logger and r.levelno == logging.WARNING
    ]


def send_each(mailer: Mailstrom, count: int, now: float = NOW) -> list[str]:
    """Send ``count`` messages, one attempt (and so one connection) each."""
    sent = []
    for _ in range(count):
        sent.append(mailer.send_email(message("a@example.test")))
        mailer.run_once(now)
    return sent


@contextmanager
def refused_connection(ca: trustme.CA) -> Iterator[RelayConfig]:
    with refusing() as port:
        yield RelayConfig(host="127.0.0.1", port=port, tls="none")


@contextmanager
def refused_login(ca: trustme.CA) -> Iterator[RelayConfig]:
    with SmtpServer(
        starttls_context=server_context(ca, "127.0.0.1"), auth_users={"app": "right"}
    ) as server:
        yield RelayConfig(
            host=server.host,
            port=server.port,
            tls="starttls",
            ssl_context=client_context(ca),
            username="app",
            password="wrong",
        )


@contextmanager
def tls_name_mismatch(ca: trustme.CA) -> Iterator[RelayConfig]:
    with SmtpServer(starttls_context=server_context(ca, "other.test")) as server:
        yield RelayConfig(
            host=server.host,
            port=server.port,
            tls="starttls",
            ssl_context=client_context(ca),
        )


RelaySetup = Callable[[trustme.CA], AbstractContextManager[RelayConfig]]
RELAY = "mailstrom_py.delivery.relay"
WORKER = "mailstrom_py.worker"


@pytest.mark.parametrize(
    ("setup", "status_code"),
    [
        pytest.param(refused_connection, "4.4.1", id="refused-connection"),
        pytest.param(refused_login, "4.7.8", id="refused-login"),
        pytest.param(tls_name_mismatch, "4.7.5", id="tls-mismatch"),
    ],
)
def test_an_unusable_relay_warns_once_a_minute_not_per_message(
    ca: trustme.CA,
    caplog: pytest.LogCaptureFixture,
    setup: RelaySetup,
    status_code: str,
) -> None:
    """Every failed connection to the relay is logged, but only the first of a
    minute at WARNING; a minute later it warns again."""
    caplog.set_level(logging.INFO, logger="mailstrom_py")
    clock = Clock()
    with setup(ca) as relay:
        mailer = relay_mailer(relay, clock)
        sent = send_each(mailer, 3)
        clock.now = 59.0
        sent += send_each(mailer, 2)
        assert len(warnings(caplog, RELAY)) == 1
        assert len([r for r in caplog.records if r.name == RELAY]) == 5
        clock.now = 61.0
        sent += send_each(mailer, 2)
        mailer.stop()
    assert len(warnings(caplog, RELAY)) == 2
    assert "unusable" in warnings(caplog, RELAY)[0]
    for message_id in sent:
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, status_code)


def test_final_failures_warn_once_a_minute_per_domain_and_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 550 fails its recipient: the first failure of a minute for a domain and
    status code is a WARNING, the others INFO; another domain warns apart."""
    caplog.set_level(logging.INFO, logger="mailstrom_py")
    with SmtpServer() as server:
        relay = RelayConfig(host=server.host, port=server.port, tls="none")
        mailer = relay_mailer(relay, Clock())
        for to in ("p5a@one.test", "p5b@one.test", "p5c@one.test", "p5@two.test"):
            mailer.send_email(message(to))
        mailer.run_once(NOW)
        assert len(warnings(caplog, WORKER)) == 2
        mailer.send_email(message("p5d@one.test"))
        mailer.run_once(NOW + 30)
        assert len(warnings(caplog, WORKER)) == 2
        failed = mailer.send_email(message("p5e@one.test"))
        mailer.run_once(NOW + 61)
        mailer.stop()
    *first, again = warnings(caplog, WORKER)
    assert sorted("@one.test" in text for text in first) == [False, True]
    assert "p5e@one.test" in again and "550 5.1.1" in again
    [r] = mailer.query_status(failed).recipients
    assert (r.result, r.status_code) == (DeliveryResult.FAILED, "5.1.1")
    assert len([r for r in caplog.records if r.name == WORKER]) >= 6


def test_the_warning_rate_keeps_each_key_apart_and_survives_a_clock_set_back() -> None:
    """Keys are independent; a clock set back starts a key's interval again."""
    rate = WarningRate(60.0)
    assert rate.warn("relay", "4.4.1", 100.0)
    assert not rate.warn("relay", "4.4.1", 159.0)
    assert rate.warn("relay", "4.7.8", 159.0)
    assert rate.warn("other", "4.4.1", 159.0)
    assert rate.warn("relay", "4.4.1", 160.0)
    assert rate.warn("relay", "4.4.1", 10.0)
    assert not rate.warn("relay", "4.4.1", 20.0)
