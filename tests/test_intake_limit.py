"""A bounded queue at intake: ``Config.max_queued``.

Once the queue holds ``max_queued`` pending messages (a recipient queued or
deferred, held ones included), ``send_email()`` and ``send_emails()`` raise
QueueFullError and store nothing; a batch goes in whole or not at all. An
Outbox counts the queue at most once a second of its clock and in between
adds what it stored itself, so the mail of other producers, and mail
delivered, are seen at the next count. The Django backend and ``mailstrom-py
send`` report a full queue as they report other failures to queue.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
from pathlib import Path

import pytest
from support.cli import config_text, run
from support.djangoproc import run_django
from support.smtpd import SmtpServer, SmtpServerFactory

from mailstrom_py import (
    AsyncOutbox,
    Config,
    ConfigError,
    DeliveryResult,
    InvalidMessageError,
    Mailstrom,
    MailstromError,
    MemoryStorage,
    Outbox,
    QueueFilter,
    QueueFullError,
    RelayConfig,
    SqliteStorage,
    Storage,
    StorageError,
    config_from_mapping,
    load_config,
)
from mailstrom_py.config.render import render

NOW = 1_750_000_000.0
HELO = "app.example.test"


def limited(limit: int | None, host: str = "relay.invalid", port: int = 25) -> Config:
    return Config(
        helo_name=HELO,
        delivery=RelayConfig(host=host, port=port, tls="none"),
        max_queued=limit,
    )


def message(n: int, to: str = "a@example.test") -> bytes:
    return (
        f"From: app@example.test\r\nTo: {to}\r\nSubject: n{n}\r\n"
        f"Message-ID: <n{n}@example.test>\r\n\r\nbody\r\n"
    ).encode()


class Clock:
    """Wall-clock seconds that a test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "memory":
        return MemoryStorage()
    return SqliteStorage(tmp_path / "outbox.db")


class CountingStorage(MemoryStorage):
    """A MemoryStorage that counts the queue counts it is asked for, and
    fails them with StorageError while ``broken``."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = 0
        self.broken = False

    def count(self, where: QueueFilter) -> int:
        self.counts += 1
        if self.broken:
            raise StorageError("the queue cannot be counted")
        return super().count(where)


class TestTheLimit:
    def test_a_full_queue_refuses_the_next_message_and_stores_nothing(
        self, storage: Storage
    ) -> None:
        """With max_queued=2, two messages go in; the third raises
        QueueFullError saying the count and the limit, is not stored, and
        nobody is notified of it."""
        heard: list[str] = []
        outbox = Outbox(limited(2), storage, clock=Clock(), notify=heard.append)
        outbox.send_email(message(1))
        outbox.send_email(message(2))
        with pytest.raises(QueueFullError) as info:
            outbox.send_email(message(3))
        assert (info.value.queued, info.value.limit, info.value.adding) == (2, 2, 1)
        assert "holds 2 pending messages" in str(info.value)
        assert "limit of 2 (max_queued)" in str(info.value)
        assert isinstance(info.value, MailstromError)
        assert outbox.count_messages() == 2
        assert heard == ["n1@example.test", "n2@example.test"]
        outbox.close()

    def test_no_limit_by_default(self) -> None:
        """Without max_queued the queue takes whatever it is given."""
        with Outbox(limited(None), MemoryStorage(), clock=Clock()) as outbox:
            outbox.send_emails(message(n) for n in range(50))
            assert outbox.count_messages() == 50

    def test_held_and_deferred_mail_counts_completed_mail_does_not(self) -> None:
        """A held message is pending and counts; a message that failed for
        good does not."""
        clock = Clock()
        with Outbox(limited(2), MemoryStorage(), clock=clock) as outbox:
            held = outbox.send_email(message(1))
            failed = outbox.send_email(message(2))
            outbox.hold(QueueFilter(ids=(held,)))
            outbox.fail(QueueFilter(ids=(failed,)))
            clock.now += 1
            outbox.send_email(message(3))
            with pytest.raises(QueueFullError):
                outbox.send_email(message(4))

    def test_the_error_survives_pickling(self) -> None:
        """QueueFullError keeps its numbers across processes."""
        again = pickle.loads(pickle.dumps(QueueFullError(7, 5, 3)))  # noqa: S301 (our own bytes)
        assert (again.queued, again.limit, again.adding) == (7, 5, 3)
        assert "3 more messages would pass its limit of 5" in str(again)


class TestBatches:
    def test_a_batch_past_the_limit_stores_nothing(self, storage: Storage) -> None:
        """With 3 of 5 places taken, a batch of 3 raises QueueFullError and
        stores none of its messages; a batch of 2 fits exactly."""
        with Outbox(limited(5), storage, clock=Clock()) as outbox:
            outbox.send_emails([message(1), message(2), message(3)])
            with pytest.raises(QueueFullError) as info:
                outbox.send_emails([message(4), message(5), message(6)])
            assert (info.value.queued, info.value.adding) == (3, 3)
            assert outbox.count_messages() == 3
            outbox.send_emails([message(4), message(5)])
            assert outbox.count_messages() == 5

    def test_a_batch_larger_than_the_limit_never_goes_in(self) -> None:
        """Into an empty queue, a batch of more than max_queued is refused."""
        with Outbox(limited(2), MemoryStorage(), clock=Clock()) as outbox:
            with pytest.raises(QueueFullError):
                outbox.send_emails(message(n) for n in range(3))
            assert outbox.count_messages() == 0

    def test_a_batch_refused_for_a_bad_message_gives_its_room_back(self) -> None:
        """A batch refused for a bad message takes no room: the places it
        asked for are free for the next batch at once."""
        with Outbox(limited(2), MemoryStorage(), clock=Clock()) as outbox:
            with pytest.raises(InvalidMessageError):
                outbox.send_emails([message(1), b"no recipient\r\n\r\nx\r\n"])
            outbox.send_emails([message(2), message(3)])
            assert outbox.count_messages() == 2


class TestCounting:
    def test_the_queue_is_counted_at_most_once_a_second(self) -> None:
        """Ten sends within one second count the queue once; the first send
        a second later counts it again."""
        storage = CountingStorage()
        clock = Clock()
        with Outbox(limited(100), storage, clock=clock) as outbox:
            for n in range(10):
                outbox.send_email(message(n))
                clock.now += 0.09
            assert storage.counts == 1
            clock.now = NOW + 1.0
            outbox.send_email(message(10))
            assert storage.counts == 2

    def test_a_delivered_message_frees_room_at_the_next_count(
        self, tmp_path: Path, smtp_server: SmtpServerFactory
    ) -> None:
        """With max_queued=1 and one message queued, the next is refused; once
        the worker has delivered the first, the same second still refuses
        (the estimate stands until the next count) and a second later the
        next message goes in."""
        server: SmtpServer = smtp_server()
        clock = Clock()
        config = limited(1, server.host, server.port)
        mailer = Mailstrom(config, SqliteStorage(tmp_path / "q.db"), clock=clock)
        first = mailer.send_email(message(1))
        with pytest.raises(QueueFullError):
            mailer.send_email(message(2))
        assert mailer.run_once(clock.now) == 1
        result = mailer.query_status(first).recipients[0].result
        assert result is DeliveryResult.DELIVERED
        with pytest.raises(QueueFullError):
            mailer.send_email(message(2))
        clock.now += 1.0
        assert mailer.send_email(message(2)) == "n2@example.test"
        assert mailer.count_messages(QueueFilter(completed=False)) == 1
        mailer.stop()
        assert len(server.handler.messages) == 1

    def test_two_outboxes_on_one_file_see_each_other_at_the_next_count(
        self, tmp_path: Path
    ) -> None:
        """Two producers share a queue with max_queued=2. Between its counts
        each sees only its own mail (the limit is approximate across
        producers); at its next count it sees the other's too."""
        path = tmp_path / "q.db"
        clock_a, clock_b = Clock(), Clock()
        a = Outbox(limited(2), SqliteStorage(path), clock=clock_a)
        b = Outbox(limited(2), SqliteStorage(path), clock=clock_b)
        b.send_email(message(1))  # b counts 0: it holds 1
        clock_a.now = NOW + 0.2
        a.send_email(message(2))  # a counts 1: it holds 2
        with pytest.raises(QueueFullError):
            a.send_email(message(3))
        clock_b.now = NOW + 0.5
        b.send_email(message(3))  # b has not counted since: 1 + 1 fits
        clock_b.now = NOW + 1.0
        with pytest.raises(QueueFullError) as info:
            b.send_email(message(4))
        assert info.value.queued == 3
        a.close()
        b.close()
        reopened = SqliteStorage(path)
        assert reopened.count(QueueFilter()) == 3
        reopened.close()

    def test_threads_on_one_outbox_never_pass_the_limit(self, tmp_path: Path) -> None:
        """Eight threads sending ten messages each through one Outbox with
        max_queued=25 store exactly 25; the rest are refused."""
        outbox = Outbox(limited(25), SqliteStorage(tmp_path / "q.db"), clock=Clock())
        refused: list[int] = []

        def produce(first: int) -> None:
            for n in range(first, first + 10):
                try:
                    outbox.send_email(message(n))
                except QueueFullError:
                    refused.append(n)

        threads = [threading.Thread(target=produce, args=(k * 10,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outbox.count_messages() == 25
        assert len(refused) == 55
        outbox.close()

    def test_a_failed_count_lets_mail_through_and_is_tried_again(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """While the queue cannot be counted, mail is stored past the limit
        and a WARNING says why; the count is tried again a second later and,
        once it works, the limit holds again."""
        storage = CountingStorage()
        storage.broken = True
        clock = Clock()
        with Outbox(limited(1), storage, clock=clock) as outbox:
            with caplog.at_level(logging.WARNING, logger="mailstrom_py.core.intake"):
                outbox.send_email(message(1))
                outbox.send_email(message(2))
            assert "cannot count the queue for max_queued" in caplog.text
            assert storage.counts == 1
            storage.broken = False
            clock.now += 1.0
            with pytest.raises(QueueFullError) as info:
                outbox.send_email(message(3))
            assert info.value.queued == 2
            assert storage.counts == 2


def test_an_async_outbox_refuses_as_its_outbox_does() -> None:
    """AsyncOutbox.send_email() and send_emails() raise the Outbox's
    QueueFullError."""

    async def main() -> tuple[int, int]:
        outbox = Outbox(limited(1), MemoryStorage(), clock=Clock())
        async with AsyncOutbox(outbox) as sender:
            await sender.send_email(message(1))
            refused = 0
            for attempt in (
                sender.send_email(message(2)),
                sender.send_emails([message(3)]),
            ):
                try:
                    await attempt
                except QueueFullError:
                    refused += 1
            return refused, outbox.count_messages()

    assert asyncio.run(main()) == (2, 1)


class TestConfiguration:
    def test_the_file_key_max_queued_sets_the_limit(self, tmp_path: Path) -> None:
        """`max_queued` at the top level of the file sets Config.max_queued;
        `config check` shows it and loads back the same."""
        path = tmp_path / "mailstrom.toml"
        path.write_text(
            config_text(port=25, db=tmp_path / "q.db", extra="max_queued = 5000"),
            encoding="utf-8",
        )
        loaded = load_config(path)
        assert loaded.config.max_queued == 5000
        printed = render(loaded)
        assert "\nmax_queued = 5000\n" in printed
        again = tmp_path / "printed.toml"
        again.write_text(printed, encoding="utf-8")
        assert load_config(again).config == loaded.config

    def test_unset_it_is_shown_as_not_set(self, tmp_path: Path) -> None:
        """Without the key there is no limit, and `config check` says so."""
        path = tmp_path / "mailstrom.toml"
        path.write_text(config_text(port=25, db=None), encoding="utf-8")
        loaded = load_config(path)
        assert loaded.config.max_queued is None
        assert "# max_queued: not set" in render(loaded)

    @pytest.mark.parametrize("value", ["0", "-3", "true", "1.5", '"100"'], ids=str)
    def test_a_bad_value_names_the_key(self, tmp_path: Path, value: str) -> None:
        """0, a negative number, a bool, a float or a string is a ConfigError
        naming max_queued."""
        path = tmp_path / "mailstrom.toml"
        path.write_text(
            config_text(port=25, db=None, extra=f"max_queued = {value}"),
            encoding="utf-8",
        )
        with pytest.raises(ConfigError, match=r"max_queued: "):
            load_config(path)

    @pytest.mark.parametrize("value", [0, -1, True, 2.0])
    def test_config_refuses_a_bad_limit(self, value: object) -> None:
        """Config itself refuses what is not an integer of at least 1."""
        with pytest.raises(ConfigError, match="max_queued"):
            limited(value)  # type: ignore[arg-type]

    def test_a_misspelt_key_is_suggested(self) -> None:
        """`max_queue` is unknown; the error suggests `max_queued`."""
        mapping = {
            "helo_name": HELO,
            "delivery": {"kind": "relay", "host": "127.0.0.1"},
            "max_queue": 10,
        }
        with pytest.raises(ConfigError, match='did you mean "max_queued"'):
            config_from_mapping(mapping)


def test_send_exits_75_when_the_queue_is_full(tmp_path: Path) -> None:
    """`mailstrom-py send` into a full queue exits 75 (EX_TEMPFAIL, try again
    later), says the queue is full, and queues nothing."""
    path = tmp_path / "mailstrom.toml"
    path.write_text(
        config_text(port=25, db=tmp_path / "q.db", extra="max_queued = 1"),
        encoding="utf-8",
    )
    report = b"From: app@example.test\nTo: ann@example.test\nSubject: x\n\nbody\n"
    first = run("send", "--config", str(path), "-t", input=report)
    assert first.returncode == 0, first.stderr
    again = run("send", "--config", str(path), "-t", input=report)
    assert again.returncode == 75
    assert b"the queue is full" in again.stderr
    assert b"limit of 1 (max_queued)" in again.stderr
    storage = SqliteStorage(tmp_path / "q.db")
    assert storage.count(QueueFilter()) == 1
    storage.close()


SEND_THREE = """
from django.core.mail import EmailMessage, get_connection
from mailstrom_py import QueueFullError

def batch(n):
    return [EmailMessage(f"{n}{i}", "x", to=["bob@example.org"]) for i in range(3)]

result = {"silent": get_connection(fail_silently=True).send_messages(batch("s"))}
try:
    get_connection().send_messages(batch("l"))
except QueueFullError as exc:
    result["loud"] = [exc.queued, exc.limit]
print(json.dumps(result))
"""


def test_django_honours_fail_silently_for_a_full_queue(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """With max_queued=2 in settings.MAILSTROM, a silent batch of three
    queues two and counts them; a loud one then raises QueueFullError."""
    pytest.importorskip("django")
    server = smtp_server()
    db = tmp_path / "outbox.db"
    settings = {
        "MAILSTROM": {
            "helo_name": "app.example.org",
            "delivery": {
                "kind": "relay",
                "host": server.host,
                "port": server.port,
                "tls": "none",
            },
            "storage": {"sqlite": str(db)},
            "max_queued": 2,
        }
    }
    result = run_django(SEND_THREE, settings, cwd=tmp_path)
    assert result == {"silent": 2, "loud": [2, 2]}
    storage = SqliteStorage(db)
    assert storage.count(QueueFilter()) == 2
    storage.close()
