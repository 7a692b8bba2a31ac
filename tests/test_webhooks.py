"""Webhooks: every event reaches a receiver that was down for a while, across
restarts of the mailer and a SIGKILL, over verified TLS."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from support import bind_socket
from support.children import kill, readline, spawn, wait_until
from support.smtpd import SmtpServer
from support.tls import server_context
from support.webhookd import WebhookReceiver

from mailstrom_py import (
    Config,
    ConfigError,
    Event,
    Mailstrom,
    MemoryStorage,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Storage,
    Timeouts,
    WebhookConfig,
    WebhookError,
    load_config,
)
from mailstrom_py.events.webhook import WebhookSender
from mailstrom_py.testing import AbstractOnly


def config_for(server: SmtpServer, hook: WebhookConfig) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(
            initial_delay=0.05, multiplier=1.0, jitter=0.0, max_attempts=2
        ),
        timeouts=Timeouts.uniform(5),
        webhook=hook,
    )


def hook_for(receiver: WebhookReceiver, **kwargs: Any) -> WebhookConfig:
    return WebhookConfig(
        url=receiver.url, retry_initial=0.05, retry_max=0.2, timeout=5, **kwargs
    )


def message(to: str, n: int) -> bytes:
    return f"From: s@example.test\r\nTo: {to}\r\nSubject: {n}\r\n\r\nhi\r\n".encode()


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as rcv:
        yield rcv


def keys(events: list[dict[str, Any]]) -> Counter[tuple[str, str, str | None]]:
    return Counter((e["kind"], e["message_id"], e["recipient"]) for e in events)


JOURNALED = {"queued", "delivered", "deferred", "failed", "possibly_delivered", "tls"}


def test_a_receiver_down_for_a_while_gets_every_event(
    server: SmtpServer, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """While the receiver refuses connections, then answers 500, events wait
    in the journal; once it answers 200 it gets each of them, signed, in order
    for each recipient."""
    heard: list[Event] = []
    hook = hook_for(receiver, secret="s3cret")
    with Mailstrom(config_for(server, hook), SqliteStorage(tmp_path / "q.db")) as m:
        m.subscribe(heard.append)
        ids = [
            m.send_email(message("ok@example.test, t4x@example.test", n))
            for n in range(5)
        ]
        sender = m.webhook
        assert sender is not None
        wait_until(lambda: sender.failures >= 2, 10)  # refused
        receiver.up(status=500)
        wait_until(lambda: any(s == 500 for s, _, _ in receiver.posts), 10)
        receiver.status = 200
        got = receiver.wait_for(
            lambda events: sum(e["kind"] == "failed" for e in events) == 5
        )
    want = keys([e.to_dict() for e in heard if e.kind in JOURNALED])
    assert keys(got) == want
    # queued x2, delivered, deferred, failed, and a tls event each attempt
    assert sum(want.values()) == 5 * (2 + 1 + 2 + 2)
    for message_id in ids:
        kinds = [
            e["kind"]
            for e in got
            if e["recipient"] == "t4x@example.test" and e["message_id"] == message_id
        ]
        assert kinds == ["queued", "deferred", "failed"]
    failed = next(e for e in got if e["kind"] == "failed")
    assert (failed["status_code"], failed["category"]) == ("5.4.7", "expired")
    deferred = next(e for e in got if e["kind"] == "deferred")
    assert deferred["reply"]["text"] == "mailbox busy"
    _, headers, body = next(p for p in receiver.posts if p[0] == 200)
    digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Mailstrom-Signature"] == f"sha256={digest}"
    assert headers["Content-Type"] == "application/json"


def test_events_not_posted_are_posted_by_the_next_mailer(
    server: SmtpServer, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """Events written while the receiver was down survive the mailer's stop;
    the next mailer on the same SQLite file posts them."""
    db = tmp_path / "q.db"
    hook = hook_for(receiver)
    with Mailstrom(config_for(server, hook), SqliteStorage(db)) as first:
        ids = [first.send_email(message("ok@example.test", n)) for n in range(4)]
        for message_id in ids:
            assert first.wait(message_id).succeeded
    assert receiver.posts == []
    pending = SqliteStorage(db)
    assert len(pending.take_events(100)) == 12  # queued, tls, delivered
    pending.close()
    receiver.up()
    with Mailstrom(config_for(server, hook), SqliteStorage(db)):
        got = receiver.wait_for(lambda events: len(events) == 12)
    assert sorted((e["message_id"], e["kind"]) for e in got) == sorted(
        (i, k) for i in ids for k in ("queued", "tls", "delivered")
    )


CHILD = """
import sys, time
from mailstrom_py import *
server_port, url, db = int(sys.argv[1]), sys.argv[2], sys.argv[3]
config = Config(
    helo_name="client.example.test",
    delivery=RelayConfig(host="127.0.0.1", port=server_port, tls="none"),
    webhook=WebhookConfig(url=url, retry_initial=0.05, retry_max=0.1),
)
mailer = Mailstrom(config, SqliteStorage(db))
mailer.start()
ids = [mailer.send_email(
    f"From: s@example.test\\r\\nTo: ok@example.test\\r\\nSubject: {n}\\r\\n\\r\\nhi\\r\\n"
) for n in range(6)]
for i in ids:
    assert mailer.wait(i, 10).succeeded
print("delivered", flush=True)
time.sleep(60)
"""


def test_a_killed_mailer_loses_no_event(
    server: SmtpServer, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """A mailer killed with SIGKILL while its receiver is down leaves every
    event of what it delivered in the journal; the next mailer posts them."""
    db = tmp_path / "q.db"
    child = spawn(CHILD, server.port, receiver.url, db)
    try:
        assert readline(child) == "delivered"
    finally:
        kill(child)
    receiver.up()
    with Mailstrom(config_for(server, hook_for(receiver)), SqliteStorage(db)):
        got = receiver.wait_for(lambda events: len(events) >= 18)
        time.sleep(0.3)
    assert Counter(e["kind"] for e in receiver.events) == {
        "queued": 6,
        "tls": 6,
        "delivered": 6,
    }
    assert len(got) == 18


def test_the_certificate_is_verified(
    receiver: WebhookReceiver, ca: trustme.CA, tmp_path: Path
) -> None:
    """Over HTTPS the receiver's certificate is verified: against the system's
    authorities by default (the test CA is not one of them), or ``ca_file``."""
    tls_receiver = WebhookReceiver(context=server_context(ca, "127.0.0.1"))
    tls_receiver.up()
    try:
        storage = MemoryStorage()
        storage.add_journaled([], 0.0, ['{"kind":"queued"}'])
        untrusting = WebhookSender(storage, WebhookConfig(url=tls_receiver.url))
        with pytest.raises(WebhookError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.send_once()
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        trusting = WebhookSender(
            storage, WebhookConfig(url=tls_receiver.url, ca_file=str(ca_file))
        )
        assert trusting.send_once() == 1
        assert tls_receiver.events == [{"kind": "queued"}]
        assert storage.take_events(10) == []
    finally:
        tls_receiver.down()


def test_a_silent_receiver_is_cut_off_at_the_timeout(tmp_path: Path) -> None:
    """A receiver that accepts and never answers fails the POST within its
    timeout; the events stay in the journal."""
    listener = bind_socket("127.0.0.1")
    listener.listen()
    try:
        storage = MemoryStorage()
        storage.add_journaled([], 0.0, ['{"kind":"queued"}'])
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        sender = WebhookSender(storage, WebhookConfig(url=url, timeout=0.5))
        started = time.monotonic()
        with pytest.raises(WebhookError):
            sender.send_once()
        assert time.monotonic() - started < 3
        assert len(storage.take_events(10)) == 1
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/", "http:// or https://"),
        ("http://example.org/hook", "https:// unless"),
        ("https:///nohost", "http:// or https://"),
    ],
)
def test_a_bad_url_is_a_config_error(url: str, reason: str) -> None:
    """Only http(s) URLs, and plain http only to this host."""
    with pytest.raises(ConfigError, match=reason):
        WebhookConfig(url=url)


def test_a_webhook_needs_a_journaling_storage(server: SmtpServer) -> None:
    """A storage without an event journal cannot carry a webhook."""
    storage: Storage = AbstractOnly()
    hook = WebhookConfig(url="http://127.0.0.1:9/")
    with pytest.raises(ConfigError, match="event journal"):
        Mailstrom(config_for(server, hook), storage)


def test_the_configuration_file_gives_a_webhook(tmp_path: Path) -> None:
    """[webhook] in a configuration file: durations, kinds, and the secret
    from the environment; a bad URL names its key."""
    text = """
helo_name = "app.example.org"
[delivery]
kind = "relay"
host = "smtp.example.org"
[webhook]
url = "https://hooks.example.org/events"
secret_env = "HOOK_SECRET"
timeout = "5s"
retry_max = "2m"
kinds = ["delivered", "failed"]
"""
    path = tmp_path / "mailstrom.toml"
    path.write_text(text, encoding="utf-8")
    hook = load_config(path, environ={"HOOK_SECRET": "k3y"}).config.webhook
    assert hook == WebhookConfig(
        url="https://hooks.example.org/events",
        secret="k3y",
        timeout=5.0,
        retry_max=120.0,
        kinds=("delivered", "failed"),
    )
    assert "k3y" not in repr(hook)
    path.write_text(text.replace("https://hooks", "http://hooks"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"webhook\.url"):
        load_config(path, environ={"HOOK_SECRET": "k3y"})
