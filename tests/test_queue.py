"""Queue operations on the mailer (with its worker running) and on the command line."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from support.smtpd import RecordingHandler, SmtpServer

from mailstrom_py import (
    Claim,
    Config,
    DeliveryResult,
    Mailstrom,
    MemoryStorage,
    MessageNotFound,
    MessageStatus,
    PreparedEmail,
    QueueFilter,
    RecipientStatus,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Storage,
    Timeouts,
)
from mailstrom_py.cli import main
from mailstrom_py.testing import prepared_email

ROOT = Path(__file__).resolve().parent.parent
HEAD = shutil.which("head") or "/usr/bin/head"

STORAGES: dict[str, Callable[[Path], Storage]] = {
    "memory": lambda _: MemoryStorage(),
    "sqlite": lambda tmp: SqliteStorage(tmp / "outbox.db"),
}


class CoreOnly(Storage):
    """A storage with the core methods only (a MemoryStorage's), no queue
    operations."""

    def __init__(self) -> None:
        self.inner = MemoryStorage()

    def add_many(
        self, emails: Sequence[PreparedEmail], now: float
    ) -> list[MessageStatus]:
        return self.inner.add_many(emails, now)

    def status(self, message_id: str) -> MessageStatus:
        return self.inner.status(message_id)

    def email(self, message_id: str) -> PreparedEmail:
        return self.inner.email(message_id)

    def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        return self.inner.claim_due(now, limit, lease)

    def next_due(self) -> float | None:
        return self.inner.next_due()

    def record_many(
        self, records: Sequence[tuple[Claim, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        return self.inner.record_many(records)


@pytest.fixture(params=sorted(STORAGES))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return STORAGES[request.param](tmp_path)


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def server(handler: RecordingHandler) -> Iterator[SmtpServer]:
    with SmtpServer(handler=handler) as srv:
        yield srv


def config_for(server: SmtpServer) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=3600, jitter=0.0),
        timeouts=Timeouts.uniform(10),
    )


def message(subject: str, to: str = "a@example.test") -> bytes:
    return (
        f"From: sender@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()


def wait_until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        threading.Event().wait(0.02)


class TestOnTheMailer:
    def test_kick_sends_deferred_mail_now(
        self, storage: Storage, server: SmtpServer, handler: RecordingHandler
    ) -> None:
        """A message deferred for an hour goes out at once when kicked."""
        handler.mail_reply = "451 4.3.0 try later"
        with Mailstrom(config_for(server), storage) as mailer:
            message_id = mailer.send_email(message("kick me"))
            [r] = mailer.wait(message_id, timeout=20).recipients
            assert r.result is DeliveryResult.DEFERRED
            handler.mail_reply = None
            assert mailer.kick(QueueFilter(ids=(message_id,))) == [message_id]
            wait_until(lambda: mailer.query_status(message_id).succeeded)
            assert mailer.query_status(message_id).attempts == 2

    def test_held_mail_waits_until_released(
        self, storage: Storage, server: SmtpServer, handler: RecordingHandler
    ) -> None:
        """A held message is not attempted while others flow; released, it goes out."""
        mailer = Mailstrom(config_for(server), storage)
        held = mailer.send_email(message("held"))
        assert mailer.hold(QueueFilter(ids=(held,))) == [held]
        mailer.start()
        assert mailer.wait(mailer.send_email(message("other")), timeout=20).succeeded
        status = mailer.query_status(held)
        assert status.held and status.attempts == 0
        assert mailer.release(QueueFilter(held=True)) == [held]
        wait_until(lambda: mailer.query_status(held).succeeded)
        assert handler.commands.count("DATA") == 2
        mailer.stop()

    def test_dropping_a_message_in_flight(
        self,
        storage: Storage,
        server: SmtpServer,
        handler: RecordingHandler,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A drop during an attempt lets it finish unrecorded; the worker carries on."""
        handler.data_delay = 1.0
        with Mailstrom(config_for(server), storage) as mailer:
            dropped = mailer.send_email(message("dropped"))
            handler.wait_until(lambda: handler.transactions == 1)
            assert mailer.drop(QueueFilter(ids=(dropped,))) == [dropped]
            handler.data_delay = 0
            assert mailer.wait(mailer.send_email(message("next")), timeout=20).succeeded
            with pytest.raises(MessageNotFound):
                mailer.query_status(dropped)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    def test_queue_operations_need_a_storage_that_offers_them(
        self, server: SmtpServer
    ) -> None:
        """A storage that is no QueueAdmin still delivers, and the queue operations
        on it raise TypeError saying why."""
        mailer = Mailstrom(config_for(server), CoreOnly())
        message_id = mailer.send_email(message("core only"))
        assert mailer.run_once() == 1
        assert mailer.query_status(message_id).succeeded
        with pytest.raises(TypeError, match="CoreOnly has no queue operations"):
            mailer.list_messages()
        with pytest.raises(TypeError, match="no queue operations"):
            mailer.kick(QueueFilter())
        assert mailer.stop()

    def test_list_count_and_recent(self, storage: Storage, server: SmtpServer) -> None:
        """list_messages() and count_messages() see the queue; query_recent() reports
        each outcome once."""
        mailer = Mailstrom(config_for(server), storage)
        first = mailer.send_email(message("first", to="a@example.test"))
        second = mailer.send_email(message("second", to="b@other.test"))
        assert [s.message_id for s in mailer.list_messages()] == [first, second]
        assert mailer.count_messages(QueueFilter(domain="other.test")) == 1
        assert [s.message_id for s in mailer.query_recent()] == [first, second]
        mailer.run_once()
        assert [s.message_id for s in mailer.query_recent()] == [first, second]
        assert mailer.query_recent() == []
        assert mailer.count_messages(QueueFilter(completed=True)) == 2
        mailer.stop()

    def test_recent_outcomes_are_reported_once_per_database(
        self, tmp_path: Path, server: SmtpServer
    ) -> None:
        """With SqliteStorage, what query_recent() reported stays reported after a restart."""
        db = tmp_path / "outbox.db"
        mailer = Mailstrom(config_for(server), SqliteStorage(db))
        done = mailer.send_email(message("done"))
        mailer.run_once()
        later = mailer.send_email(message("later"))
        assert [s.message_id for s in mailer.query_recent()] == [done, later]
        mailer.stop()
        again = Mailstrom(config_for(server), SqliteStorage(db))
        assert [s.message_id for s in again.query_recent()] == [later]
        again.stop()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """m1 two hours old and deferred; m2 new for other.test; m3 new and held."""
    path = tmp_path / "outbox.db"
    storage = SqliteStorage(path)
    now = time.time()
    storage.add(prepared_email(1, "a@example.test"), now - 7200)
    [claim] = storage.claim_due(now - 7200, limit=1, lease=60.0)
    deferred = dataclasses.replace(
        claim.status.recipients[0],
        result=DeliveryResult.DEFERRED,
        status_code="4.4.1",
        detail="connection refused",
        next_attempt_at=now + 3600,
    )
    storage.record(claim, [deferred])
    storage.add(prepared_email(2, "b@other.test", "c@example.test"), now)
    storage.add(prepared_email(3, "d@example.test"), now)
    storage.hold(QueueFilter(ids=("m3@example.test",)))
    storage.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class TestCommandLine:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            ([], ["m1", "m2", "m3"]),
            (["m2@example.test", "<m3@example.test>"], ["m2", "m3"]),
            (["--domain", "other.test"], ["m2"]),
            (["--recipient", "C@EXAMPLE.TEST"], ["m2"]),
            (["--result", "deferred"], ["m1"]),
            (["--result", "deferred", "--result", "queued"], ["m1", "m2", "m3"]),
            (["--held"], ["m3"]),
            (["--not-held"], ["m1", "m2"]),
            (["--older-than", "1h"], ["m1"]),
            (["--newer-than", "30m"], ["m2", "m3"]),
            (["--completed"], []),
            (["--pending", "--domain", "example.test"], ["m1", "m2", "m3"]),
        ],
    )
    def test_list_and_count_apply_the_filters(
        self,
        db: Path,
        capsys: pytest.CaptureFixture[str],
        args: list[str],
        expected: list[str],
    ) -> None:
        """`queue list` shows the selected messages, `queue count` counts them."""
        code, out, _ = run(capsys, "queue", "list", "--db", str(db), *args)
        assert code == 0
        if not expected:
            assert out == "no message selected\n"
            out = ""
        heads = [line.split()[0] for line in out.splitlines() if not line[0].isspace()]
        assert heads == [f"{n}@example.test" for n in expected]
        assert run(capsys, "queue", "count", "--db", str(db), *args)[1] == (
            f"{len(expected)}\n"
        )

    def test_list_shows_each_recipient(
        self, db: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each message line (id, size, age, sender, state) is followed by its
        recipients' states, next attempts and outcomes."""
        _, out, _ = run(capsys, "queue", "list", "--db", str(db), "--limit", "1")
        head, recipient = out.splitlines()
        assert head.startswith("m1@example.test  ")
        assert "  age 2h  from <sender@example.test>  " in head
        assert head.endswith("  pending")
        assert recipient.split()[:3] == ["a@example.test", "deferred", "attempts=1"]
        assert "  next in 59m  " in recipient
        assert recipient.endswith("4.4.1 connection refused")

    def test_kick_hold_release_and_drop(
        self, db: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each operation prints the ids it changed and a summary."""
        before = time.time()
        assert run(capsys, "queue", "kick", "--db", str(db), "m1@example.test") == (
            0,
            "m1@example.test\n",
            "kicked 1 message\n",
        )
        storage = SqliteStorage(db)
        due = storage.status("m1@example.test").next_attempt_at
        assert due is not None and before <= due <= time.time()
        storage.close()
        assert run(capsys, "queue", "hold", "--db", str(db), "--domain", "other.test")[
            1:
        ] == ("m2@example.test\n", "held 1 message\n")
        assert run(capsys, "queue", "release", "--db", str(db))[1:] == (
            "m2@example.test\nm3@example.test\n",
            "released 2 messages\n",
        )
        assert run(capsys, "queue", "drop", "--db", str(db), "--older-than", "1h")[
            1:
        ] == ("m1@example.test\n", "dropped 1 message\n")
        assert run(capsys, "queue", "count", "--db", str(db))[1] == "2\n"

    def test_drop_everything_takes_all(
        self, db: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without ids or a filter, drop refuses unless told --all."""
        code, out, err = run(capsys, "queue", "drop", "--db", str(db))
        assert (code, out) == (2, "")
        assert "--all" in err
        assert run(capsys, "queue", "count", "--db", str(db))[1] == "3\n"
        assert run(capsys, "queue", "drop", "--db", str(db), "--all")[2] == (
            "dropped 3 messages\n"
        )

    def test_nothing_selected_is_not_an_error(
        self, db: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A filter matching nothing succeeds and changes nothing."""
        assert run(capsys, "queue", "kick", "--db", str(db), "--domain", "x.test") == (
            0,
            "",
            "kicked 0 messages\n",
        )
        assert run(capsys, "queue", "list", "--db", str(db), "--domain", "x.test")[
            :2
        ] == (0, "no message selected\n")

    def test_status_of_one_message(
        self, db: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`status ID` prints the message and its recipients; unknown ids fail."""
        code, out, _ = run(capsys, "status", "m3@example.test", "--db", str(db))
        assert code == 0
        assert out.splitlines()[0].endswith("  pending held")
        code, out, err = run(capsys, "status", "nope@example.test", "--db", str(db))
        assert (code, out) == (1, "")
        assert "nope@example.test" in err

    def test_a_missing_database_is_not_created(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A mistyped --db path fails instead of creating an empty queue."""
        path = tmp_path / "typo.db"
        code, _, err = run(capsys, "queue", "list", "--db", str(path))
        assert code == 1
        assert "no database" in err
        assert not path.exists()

    def test_a_reader_that_stops_early_gets_no_traceback(self, tmp_path: Path) -> None:
        """`queue list | head -1` on a long queue prints one line and nothing on
        stderr, and exits 141 as a tool that SIGPIPE ended does."""
        path = tmp_path / "q.db"
        storage = SqliteStorage(path)
        recipients = [f"r{n}@example.test" for n in range(10)]
        # About 400 KB of listing: far more than a pipe holds, so writes go on
        # after head has gone.
        storage.add_many([prepared_email(n, *recipients) for n in range(600)], 1e9)
        storage.close()
        lister = subprocess.Popen(
            [sys.executable, "-m", "mailstrom_py", "queue", "list", "--db", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert lister.stdout is not None and lister.stderr is not None
        head = subprocess.Popen(
            [HEAD, "-1"], stdin=lister.stdout, stdout=subprocess.PIPE
        )
        lister.stdout.close()  # head alone reads it now
        first, _ = head.communicate(timeout=60)
        errors = lister.stderr.read()
        lister.stderr.close()
        assert errors == b""
        assert lister.wait(timeout=60) == 141
        assert first.decode().startswith("m0@example.test  ")
        assert first.count(b"\n") == 1

    def test_a_bad_age_is_a_usage_error(
        self, db: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--older-than takes a number with an optional unit (s, m, h, d)."""
        with pytest.raises(SystemExit) as info:
            main(["queue", "list", "--db", str(db), "--older-than", "soon"])
        assert info.value.code == 2
        assert "soon" in capsys.readouterr().err
