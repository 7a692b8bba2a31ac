"""Events: typed, frozen, in order for each recipient, on a dispatcher thread
that neither slows nor breaks delivery."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence

import pytest
from support.smtpd import SmtpServer

from mailstrom_py import (
    Config,
    DeliveryResult,
    Event,
    EventKind,
    Mailstrom,
    MemoryStorage,
    Outbox,
    RecipientStatus,
    RelayConfig,
    Remote,
    RetryPolicy,
    SmtpReply,
    SmtpStep,
    Timeouts,
)
from mailstrom_py.bounce import BounceCategory
from mailstrom_py.event import outcome_events, started_events
from mailstrom_py.events import Dispatcher
from mailstrom_py.testing import RecordingTransport
from mailstrom_py.testing.emails import prepared_email
from mailstrom_py.worker.attempts import Attempts


def config_for(server: SmtpServer, **kwargs: object) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(
            initial_delay=0.05, multiplier=1.0, jitter=0.0, max_attempts=3
        ),
        timeouts=Timeouts.uniform(5),
        **kwargs,  # type: ignore[arg-type]
    )


def message(to: str, n: int = 0) -> bytes:
    return (
        f"From: sender@example.test\r\nTo: {to}\r\nSubject: m{n}\r\n\r\nbody\r\n"
    ).encode()


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def wait_for(self, predicate: object, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.events)):  # type: ignore[operator]
                    return
            time.sleep(0.02)
        raise AssertionError(f"not seen in {timeout}s: {self.events}")


def by_recipient(events: list[Event]) -> dict[tuple[str, str], list[str]]:
    kinds: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in events:
        if e.recipient is not None:
            kinds[e.message_id, e.recipient].append(e.kind.value)
    return kinds


def test_events_arrive_in_order_for_each_recipient(server: SmtpServer) -> None:
    """Across four delivery threads and retries, each recipient's events come
    in the order they happened: queued, then each attempt's start and
    outcome; a refusal carries its bounce category; each session's TLS
    outcome is reported."""
    collector = Collector()
    with Mailstrom(config_for(server)) as mailer:
        mailer.subscribe(collector)
        ids = [
            mailer.send_email(message("ok@example.test, t4busy@example.test", n))
            for n in range(12)
        ] + [mailer.send_email(message("p5gone@example.test", 99))]
        collector.wait_for(lambda events: sum(e.kind == "failed" for e in events) == 13)
    kinds = by_recipient(collector.events)
    for message_id in ids[:12]:
        assert kinds[message_id, "ok@example.test"] == [
            "queued",
            "attempt_started",
            "delivered",
        ]
        assert kinds[message_id, "t4busy@example.test"] == [
            "queued",
            "attempt_started",
            "deferred",
            "attempt_started",
            "deferred",
            "attempt_started",
            "failed",
        ]
    assert kinds[ids[12], "p5gone@example.test"] == [
        "queued",
        "attempt_started",
        "failed",
    ]
    [refused] = [e for e in collector.events if e.recipient == "p5gone@example.test"][
        -1:
    ]
    assert refused.status_code == "5.1.1"
    assert refused.category is BounceCategory.BAD_MAILBOX
    assert refused.reply is not None and refused.reply.code == 550
    tls = [e for e in collector.events if e.kind is EventKind.TLS]
    assert tls and all(e.recipient is None and e.tls_version is None for e in tls)
    assert all(e.destination == server.host for e in tls)


def deliver_all(server: SmtpServer, listener: object | None, count: int) -> float:
    """Seconds from the first send to the last message received."""
    with Mailstrom(config_for(server)) as mailer:
        if listener is not None:
            mailer.subscribe(listener)  # type: ignore[arg-type]
        started = time.monotonic()
        for n in range(count):
            mailer.send_email(message("ok@example.test", n))
        server.handler.wait_for(count, timeout=30)
        took = time.monotonic() - started
        mailer.stop(drain=0, timeout=5)
    return took


def test_a_sleeping_listener_does_not_slow_delivery() -> None:
    """A listener that sleeps 100 ms per event (9 s for this batch) leaves
    delivery as fast as with no listener, and still gets its events."""
    count = 30
    with SmtpServer() as plain:
        without = deliver_all(plain, None, count)
    heard: list[Event] = []

    def sleepy(event: Event) -> None:
        time.sleep(0.1)
        heard.append(event)

    with SmtpServer() as busy:
        with_listener = deliver_all(busy, sleepy, count)
    assert with_listener < without + 1.5, (with_listener, without)
    assert len(heard) < 3 * count  # it was still behind when delivery ended


def test_a_raising_listener_is_logged_and_delivery_goes_on(
    server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener's exception is logged; the other listeners and delivery go on."""
    collector = Collector()

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    caplog.set_level(logging.ERROR, logger="mailstrom_py.events")
    with Mailstrom(config_for(server)) as mailer:
        mailer.subscribe(broken)
        mailer.subscribe(collector)
        message_id = mailer.send_email(message("ok@example.test"))
        collector.wait_for(lambda events: any(e.kind == "delivered" for e in events))
        assert mailer.query_status(message_id).succeeded
    assert "listener bug" in caplog.text
    assert len(server.handler.messages) == 1


def test_a_full_queue_drops_events_and_counts_them() -> None:
    """With room for 5 events and a listener stuck, the 15 events beyond are
    dropped and counted; sending never waits; the 5 are handed on later."""
    release = threading.Event()
    heard: list[Event] = []

    def stuck(event: Event) -> None:
        release.wait(10)
        heard.append(event)

    config = Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host="127.0.0.1", port=1, tls="none"),
        event_queue_size=5,
    )
    with Outbox(config, MemoryStorage()) as outbox:
        outbox.subscribe(stuck)
        started = time.monotonic()
        for n in range(20):
            outbox.send_email(message("a@example.test", n))
        assert time.monotonic() - started < 5
        assert outbox.events_dropped == 15
        release.set()
    assert [e.kind for e in heard] == ["queued"] * 5


def test_an_outbox_emits_queued_per_recipient_and_unsubscribe_stops_it() -> None:
    """An Outbox emits one frozen ``queued`` event per recipient; after
    unsubscribing, a listener hears nothing more."""
    config = Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host="127.0.0.1", port=1, tls="none"),
    )
    collector = Collector()
    with Outbox(config, MemoryStorage()) as outbox:
        unsubscribe = outbox.subscribe(collector)
        first = outbox.send_email(message("a@example.test, b@example.test"))
        collector.wait_for(lambda events: len(events) == 2)
        unsubscribe()
        unsubscribe()
        outbox.send_email(message("c@example.test", 1))
    assert [(e.kind, e.message_id, e.recipient) for e in collector.events] == [
        ("queued", first, "a@example.test"),
        ("queued", first, "b@example.test"),
    ]
    with pytest.raises(AttributeError):
        collector.events[0].kind = EventKind.FAILED  # type: ignore[misc]


def test_an_event_survives_a_json_round_trip() -> None:
    """to_dict()/from_dict() give back an equal event; junk is a ValueError."""
    event = Event(
        EventKind.FAILED,
        "m@x",
        "a@example.test",
        12.5,
        status_code="5.1.1",
        reply=SmtpReply(550, "5.1.1", "no such user", SmtpStep.RCPT),
        category=BounceCategory.BAD_MAILBOX,
        attempts=1,
        destination="mx.test",
    )
    assert Event.from_dict(event.to_dict()) == event
    with pytest.raises(ValueError, match="not an event"):
        Event.from_dict({"kind": "nonsense"})


def test_the_events_of_an_attempt_are_events_like_any_other() -> None:
    """The events the worker builds for an attempt (attempt_started, tls and
    the outcome) are frozen and equal, field for field and in hash, to the
    same events built with Event(...)."""
    reply = SmtpReply(550, "5.1.1", "no such user", SmtpStep.RCPT)
    remote = Remote("mx.test", "127.0.0.1", 25, "TLSv1.3", True)
    claimed = RecipientStatus("a@example.test", attempts=2)
    failed = RecipientStatus(
        "a@example.test",
        DeliveryResult.FAILED,
        attempts=2,
        last_reply=reply,
        status_code="5.1.1",
        detail="no such user",
        remote=remote,
    )
    [started] = started_events("m@x", [claimed], 10.0)
    tls, outcome = outcome_events("m@x", [failed], 12.5, queued_at=1.0)
    expected = [
        Event(EventKind.ATTEMPT_STARTED, "m@x", "a@example.test", 10.0, attempts=2),
        Event(
            EventKind.TLS,
            "m@x",
            None,
            12.5,
            destination="mx.test",
            tls_version="TLSv1.3",
            tls_verified=True,
        ),
        Event(
            EventKind.FAILED,
            "m@x",
            "a@example.test",
            12.5,
            status_code="5.1.1",
            detail="no such user",
            reply=reply,
            destination="mx.test",
            category=BounceCategory.BAD_MAILBOX,
            attempts=2,
            queued_at=1.0,
        ),
    ]
    for built, wanted in zip([started, tls, outcome], expected, strict=True):
        assert built == wanted
        assert hash(built) == hash(wanted)
        assert repr(built) == repr(wanted)
        assert vars(built) == vars(wanted)
        with pytest.raises(AttributeError):
            built.kind = EventKind.QUEUED  # type: ignore[misc]


def test_observers_see_each_event_in_the_producers_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An observer of the dispatcher is called in the thread that hands the
    event in, as it does, with or without listeners, and once the dispatcher
    has stopped; an observer that raises is logged and the others go on."""
    dispatcher = Dispatcher(capacity=10)
    seen: list[tuple[str, str | None, int]] = []

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    dispatcher.observe(broken)
    dispatcher.observe(
        lambda e: seen.append((e.kind, e.recipient, threading.get_ident()))
    )
    me = threading.get_ident()
    slot = dispatcher.reserve()
    dispatcher.emit([Event(EventKind.QUEUED, "m", "b@example.test", 1.0)])
    slot.fill([Event(EventKind.QUEUED, "m", "a@example.test", 1.0)])
    collector = Collector()
    dispatcher.subscribe(collector)
    dispatcher.emit([Event(EventKind.QUEUED, "m", "c@example.test", 1.0)])
    assert dispatcher.stop(5)
    dispatcher.emit([Event(EventKind.QUEUED, "m", "d@example.test", 1.0)])
    assert seen == [
        ("queued", "b@example.test", me),
        ("queued", "a@example.test", me),
        ("queued", "c@example.test", me),
        ("queued", "d@example.test", me),
    ]
    assert [e.recipient for e in collector.events] == ["c@example.test"]
    raised = [r for r in caplog.records if r.getMessage().startswith("event observer")]
    assert len(raised) == 4


def test_a_batch_observer_sees_the_events_handed_in_together(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch observer is called once per batch of events handed in, with
    them in order, in the producer's thread; one that raises is logged and
    the others go on; an empty batch is not shown."""
    dispatcher = Dispatcher(capacity=10)
    batches: list[list[str | None]] = []

    def broken(events: Sequence[Event]) -> None:
        raise RuntimeError("observer bug")

    dispatcher.observe_batches(broken)
    dispatcher.observe_batches(lambda es: batches.append([e.recipient for e in es]))
    first, second = (
        Event(EventKind.QUEUED, "m", f"{name}@example.test", 1.0) for name in ("a", "b")
    )
    dispatcher.emit([first, second])
    dispatcher.reserve().fill([second])
    dispatcher.reserve().fill([])
    assert batches == [
        ["a@example.test", "b@example.test"],
        ["b@example.test"],
    ]
    raised = [r for r in caplog.records if r.getMessage().startswith("event observer")]
    assert len(raised) == 2


def test_events_are_heard_with_a_listener_an_observer_or_a_full_queue() -> None:
    """A dispatcher, and the slots it reserves, are heard once a listener or
    an observer of either kind is there, and a slot of a full queue is heard
    (its events are counted as dropped); a dispatcher alone is not."""
    alone = Dispatcher()
    assert not alone.heard
    assert not alone.reserve().heard
    for register in (
        lambda d: d.subscribe(lambda e: None),
        lambda d: d.observe(lambda e: None),
        lambda d: d.observe_batches(lambda es: None),
    ):
        dispatcher = Dispatcher(capacity=1)
        register(dispatcher)
        assert dispatcher.heard
        assert dispatcher.reserve().heard
    full = Dispatcher(capacity=1)
    full.subscribe(lambda e: None)
    held = full.reserve()
    assert full.reserve().heard  # dropped, and counted
    held.fill([])
    full.stop(5)


class _Sink:
    """An event sink that says whether it is heard, and keeps every event
    handed in."""

    journaling = False

    def __init__(self, *, heard: bool) -> None:
        self.heard = heard
        self.handed: list[Event] = []
        self.fills = 0

    def reserve(self) -> _Sink:
        return self

    def emit(self, events: Sequence[Event]) -> None:
        self.handed += events

    def fill(self, events: Sequence[Event]) -> None:
        self.fills += 1
        self.handed += events


@pytest.mark.parametrize("heard", [True, False])
def test_an_attempt_builds_its_events_only_when_they_are_heard(heard: bool) -> None:
    """The worker's attempts hand their ``attempt_started``, ``tls`` and
    outcome events to a sink that is heard, and build none for one that is
    not (its slot still filled, empty, once per outcome)."""
    storage = MemoryStorage()
    storage.add(prepared_email(1, "a@example.test", "b@example.test"), 100.0)
    sink = _Sink(heard=heard)
    attempts = Attempts(
        storage,
        RecordingTransport(),
        RetryPolicy(),
        clock=lambda: 100.0,
        rng=random.Random(0),
        reporter=None,
        queue=lambda report_id: None,
        recorded=lambda status: None,
        events=sink,
    )
    [status] = attempts.run(storage.claim_due(100.0, 10, 60.0), 100.0)
    assert status.succeeded
    assert sink.fills == 1
    kinds = [e.kind for e in sink.handed]
    assert kinds == (["attempt_started"] * 2 + ["delivered"] * 2 if heard else [])
