"""Metrics: counters and histograms of what events report, gauges read when
asked, in the Prometheus text format (checked with prometheus_client's own
parser) and served by the dashboard at /metrics."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.smtpd import SmtpServer

from mailstrom_py import (
    Config,
    Event,
    EventKind,
    Mailstrom,
    MemoryStorage,
    Outbox,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Timeouts,
)
from mailstrom_py.contrib.prometheus import MetricsCollector
from mailstrom_py.dashboard import (
    Dashboard,
    DashboardServer,
    Guard,
    Options,
    dashboard_hosts,
)
from mailstrom_py.events import Metrics
from mailstrom_py.events.metrics import MAX_DESTINATIONS


def config_for(server: SmtpServer) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=60, jitter=0.0),
        timeouts=Timeouts.uniform(5),
    )


def message(to: str, n: int) -> bytes:
    return f"From: s@example.test\r\nTo: {to}\r\nSubject: {n}\r\n\r\nhi\r\n".encode()


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


def settle(mailer: Mailstrom, kinds: int) -> None:
    """Wait until the metrics have heard of ``kinds`` outcomes."""
    deadline = time.monotonic() + 10
    while (
        sum(
            s.value
            for s in mailer.metrics.samples()
            if s.name == "mailstrom_recipients_total"
        )
        < kinds
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_mailer_counts_results_attempts_latency_and_depth(
    server: SmtpServer,
) -> None:
    """Three messages, each to one good and one refused address: 3 delivered
    and 3 failed at the relay, 6 attempts and 6 queued, 3 bad-mailbox bounces,
    3 latencies, and a queue left empty; a deferred recipient keeps one
    message in the queue's depth."""
    with Mailstrom(config_for(server)) as mailer:
        for n in range(3):
            mailer.send_email(message("ok@example.test, p5x@example.test", n))
        settle(mailer, 6)
        m = mailer.metrics
        host = server.host
        assert (
            m.value("mailstrom_recipients_total", destination=host, result="delivered")
            == 3
        )
        assert (
            m.value("mailstrom_recipients_total", destination=host, result="failed")
            == 3
        )
        assert m.value("mailstrom_attempts_total") == 6
        assert m.value("mailstrom_queued_total") == 6
        assert m.value("mailstrom_bounces_total", category="bad_mailbox") == 3
        assert m.value("mailstrom_tls_total", version="none", verified="false") == 3
        assert m.value("mailstrom_delivery_latency_seconds_count") == 3
        assert m.value("mailstrom_delivery_latency_seconds_bucket", le="+Inf") == 3
        assert m.value("mailstrom_queue_depth") == 0
        mailer.send_email(message("t4later@example.test", 9))
        settle(mailer, 7)
        assert m.value("mailstrom_queue_depth") == 1
        assert m.value("mailstrom_events_dropped_total") == 0


def test_the_text_is_valid_prometheus_exposition(server: SmtpServer) -> None:
    """prometheus_client's parser reads the text: each family typed, the
    histogram's buckets cumulative up to +Inf, which equals its count."""
    with Mailstrom(config_for(server)) as mailer:
        for n in range(4):
            mailer.send_email(message("ok@example.test", n))
        settle(mailer, 4)
        text = mailer.metrics_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["mailstrom_recipients"].type == "counter"
    assert families["mailstrom_queue_depth"].type == "gauge"
    latency = families["mailstrom_delivery_latency_seconds"]
    assert latency.type == "histogram"
    buckets = [s.value for s in latency.samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets)
    assert buckets[-1] == 4
    count = next(s.value for s in latency.samples if s.name.endswith("_count"))
    assert count == 4


def test_destinations_beyond_the_limit_count_as_other() -> None:
    """Past MAX_DESTINATIONS names, outcomes count under "other", so the
    series stay bounded however many domains are mailed."""
    metrics = Metrics()
    for n in range(MAX_DESTINATIONS + 50):
        metrics(Event(EventKind.DELIVERED, "m", f"a@d{n}.test", 1.0))
    names = {
        dict(s.labels)["destination"]
        for s in metrics.samples()
        if s.name == "mailstrom_recipients_total"
    }
    assert len(names) == MAX_DESTINATIONS + 1
    assert (
        metrics.value(
            "mailstrom_recipients_total", destination="other", result="delivered"
        )
        == 50
    )


def test_prometheus_client_collects_the_same_values(server: SmtpServer) -> None:
    """With the [prometheus] extra, a collector puts the metrics in a
    prometheus_client registry."""
    registry = prometheus_client.CollectorRegistry()
    with Mailstrom(config_for(server)) as mailer:
        registry.register(MetricsCollector(mailer.metrics))
        mailer.send_email(message("ok@example.test", 1))
        settle(mailer, 1)
        assert (
            registry.get_sample_value(
                "mailstrom_recipients_total",
                {"destination": server.host, "result": "delivered"},
            )
            == 1
        )
        assert registry.get_sample_value("mailstrom_queued_total") == 1


def test_the_dashboard_serves_metrics(server: SmtpServer, tmp_path: Path) -> None:
    """GET /metrics on a dashboard given the mailer's metrics answers the text,
    typed for Prometheus, without the token."""
    storage = SqliteStorage(f"{tmp_path}/q.db")
    with Mailstrom(config_for(server), storage) as mailer:
        mailer.send_email(message("ok@example.test", 1))
        settle(mailer, 1)
        app = Dashboard(
            mailer.storage,  # type: ignore[arg-type]
            Guard("token", dashboard_hosts("127.0.0.1")),
            Options(),
            metrics=mailer.metrics_text,
        )
        served = DashboardServer(("127.0.0.1", 0), app)
        thread = threading.Thread(target=served.serve_forever, daemon=True)
        thread.start()
        try:
            with urllib.request.urlopen(served.url.rstrip("/") + "/metrics") as reply:  # noqa: S310
                body = reply.read().decode()
                kind = reply.headers["Content-Type"]
        finally:
            served.shutdown()
            served.server_close()
    assert kind.startswith("text/plain; version=0.0.4")
    assert (
        'mailstrom_recipients_total{destination="127.0.0.1",result="delivered"} 1'
        in body
    )


def test_an_outbox_counts_from_the_first_use_of_its_metrics() -> None:
    """An Outbox starts no thread until its metrics are asked for; from then
    on, it counts what it queues."""
    config = Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host="127.0.0.1", port=1, tls="none"),
    )
    with Outbox(config, MemoryStorage()) as outbox:
        outbox.send_email(message("a@example.test", 0))
        metrics = outbox.metrics
        outbox.send_email(message("a@example.test, b@example.test", 1))
        deadline = time.monotonic() + 5
        while metrics.value("mailstrom_queued_total") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert metrics.value("mailstrom_queue_depth") == 2


def test_a_mailer_with_no_listener_counts_every_event_without_a_thread(
    server: SmtpServer,
) -> None:
    """Metrics count each event in the thread that produces it: a mailer
    nobody subscribes to runs no dispatcher thread, and its metrics have
    counted a message's queued, attempt and outcome events by the time
    ``wait()`` returns."""
    before = set(threading.enumerate())
    with Mailstrom(config_for(server)) as mailer:
        message_id = mailer.send_email(message("ok@example.test, b@example.test", 1))
        assert mailer.metrics.value("mailstrom_queued_total") == 2
        assert mailer.wait(message_id, timeout=10).succeeded
        m = mailer.metrics
        assert m.value("mailstrom_attempts_total") == 2
        assert (
            m.value(
                "mailstrom_recipients_total",
                destination=server.host,
                result="delivered",
            )
            == 2
        )
        assert m.value("mailstrom_tls_total", version="none", verified="false") == 1
        assert m.value("mailstrom_event_queue_depth") == 0
        names = [t.name for t in set(threading.enumerate()) - before]
        assert "mailstrom-delivery-0" in names
        assert "mailstrom-events" not in names, names
        mailer.subscribe(lambda event: None)
        names = [t.name for t in set(threading.enumerate()) - before]
        assert "mailstrom-events" in names


def test_metrics_count_the_events_a_full_queue_drops() -> None:
    """With room for 2 events and a listener stuck, the listener misses the
    rest and they count as dropped, but the metrics, which need no queue,
    count every one."""
    release = threading.Event()

    def stuck(event: Event) -> None:
        release.wait(10)

    config = Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host="127.0.0.1", port=1, tls="none"),
        event_queue_size=2,
    )
    with Outbox(config, MemoryStorage()) as outbox:
        metrics = outbox.metrics
        outbox.subscribe(stuck)
        for n in range(6):
            outbox.send_email(message("a@example.test", n))
        assert metrics.value("mailstrom_queued_total") == 6
        assert metrics.value("mailstrom_events_dropped_total") == 4
        assert metrics.value("mailstrom_event_queue_depth") == 2
        release.set()
