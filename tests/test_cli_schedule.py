"""Scheduled mail and the operator's commands through the real command line:
``send --in/--at`` with a worker running against a loopback SMTP server,
``queue schedule``, ``queue fail`` (with a report to the sender when DSNs are
on) and the ``--sender`` filter."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from support.cli import Daemon, config_text, run
from support.smtpd import RecordingHandler, SmtpServer, SmtpServerFactory

from mailstrom_py import QueueFilter, SqliteStorage

MESSAGE = (
    b"From: App <app@example.test>\n"
    b"To: alice@example.test\n"
    b"Subject: %s\n"
    b"\n"
    b"Sent when it was due.\n"
)


def write_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    path = tmp_path / "mailstrom.toml"
    text = config_text(port=port, db=tmp_path / "outbox.db", extra=extra)
    path.write_text(text, encoding="utf-8")
    return path


def send(config: Path, subject: str, *options: str, sender: str = "") -> str:
    """Queue a message with ``send -t -v OPTIONS``; return its id."""
    message = MESSAGE % subject.encode()
    if sender:
        message = message.replace(b"app@example.test", sender.encode())
    done = run("send", "--config", str(config), "-t", "-v", *options, input=message)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split()[2].rstrip(",")


def queue(config: Path, *args: str) -> tuple[int, str, str]:
    done = run("queue", *args, "--config", str(config))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def due_at(config: Path, message_id: str) -> float:
    """When the message is next due, read from its SQLite file."""
    with contextlib.closing(SqliteStorage(config.parent / "outbox.db")) as storage:
        due = storage.status(message_id).next_attempt_at
    assert due is not None
    return due


def subjects(server: SmtpServer) -> list[str]:
    return [
        str(message_from_bytes(m.data, policy=default)["Subject"])
        for m in server.handler.messages
    ]


class TimedHandler(RecordingHandler):
    """Records when each message's data arrives, by Subject."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        data = bytes(envelope.original_content or b"")
        subject = str(message_from_bytes(data, policy=default)["Subject"])
        self.arrived[subject] = time.time()
        return await super().handle_DATA(server, session, envelope)


def test_a_worker_sends_scheduled_mail_when_it_is_due_and_not_before(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """Mail queued with `send --in 3s` and `send --at` (4 s ahead, UTC) is
    stored due then; a running worker delivers mail due now, and the scheduled
    mail once its time has come, not before."""
    handler = TimedHandler()
    server = smtp_server(handler=handler)
    config = write_config(tmp_path, server.port)
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering through 127.0.0.1")
        asked = time.time()
        send(config, "in", "--in", "3s")
        at = datetime.now(UTC) + timedelta(seconds=4)
        exact = send(config, "at", "--at", at.isoformat().replace("+00:00", "Z"))
        send(config, "now")
        server.handler.wait_for(3, timeout=30)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
    assert sorted(subjects(server)) == ["at", "in", "now"]
    assert handler.arrived["in"] >= asked + 3
    assert handler.arrived["at"] >= at.timestamp()
    with contextlib.closing(SqliteStorage(tmp_path / "outbox.db")) as storage:
        [recipient] = storage.status(exact).recipients
    assert recipient.attempts == 1
    assert recipient.last_attempt_at is not None
    assert recipient.last_attempt_at >= at.timestamp()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (("--in", "soon"), "is not a duration"),
        (("--in", "61d"), "more than 60 days ahead"),
        (("--at", "next tuesday"), "is not an ISO 8601 time"),
        (("--at", "2026-01-01T00:00Z", "--in", "1h"), "--at or --in, not both"),
    ],
)
def test_a_time_that_cannot_be_used_is_a_usage_error(
    tmp_path: Path, options: tuple[str, ...], error: str
) -> None:
    """send exits 64 (EX_USAGE) with the reason, and queues nothing."""
    config = write_config(tmp_path, 25)
    done = run("send", "--config", str(config), "-t", *options, input=MESSAGE)
    assert done.returncode == 64
    assert error in done.stderr.decode()
    assert not (tmp_path / "outbox.db").exists()


def test_queue_schedule_moves_the_next_attempt(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """`queue schedule ID --in 2s` brings mail due tomorrow to two seconds from
    now, and a worker sends it then; `--at` sets an exact time; a held message
    stays held."""
    server = smtp_server()
    config = write_config(tmp_path, server.port)
    tomorrow = send(config, "tomorrow", "--in", "1d")
    held = send(config, "held", "--in", "1d")
    assert queue(config, "hold", held)[0] == 0
    at = datetime.now(UTC) + timedelta(hours=5)
    code, out, err = queue(config, "schedule", held, "--at", at.isoformat())
    assert (code, out.split(), err.strip()) == (0, [held], "scheduled 1 message")
    assert due_at(config, held) == pytest.approx(at.timestamp(), abs=1e-3)
    assert queue(config, "list", "--held")[1].startswith(held)
    before = time.time()
    code, out, _ = queue(config, "schedule", tomorrow, "--in", "2s")
    assert (code, out.split()) == (0, [tomorrow])
    due = due_at(config, tomorrow)
    assert before + 2 <= due <= time.time() + 2
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering")
        server.handler.wait_for(1, timeout=20)
        assert time.time() >= due
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
    assert subjects(server) == ["tomorrow"]


def test_queue_schedule_needs_a_usable_time(tmp_path: Path) -> None:
    """Without --in or --at, or more than 60 days ahead: exit 2, nothing changed."""
    config = write_config(tmp_path, 25)
    message_id = send(config, "x", "--in", "1h")
    due = due_at(config, message_id)
    code, _, err = queue(config, "schedule", message_id)
    assert code == 2 and "--in" in err
    code, _, err = queue(config, "schedule", message_id, "--in", "90d")
    assert code == 2 and "more than 60 days ahead" in err
    code, _, err = queue(config, "schedule", "nope@example.test", "--in", "1h")
    assert code == 1 and "no message with id 'nope@example.test'" in err
    assert due_at(config, message_id) == due


def test_queue_fail_fails_and_reports_to_the_sender(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """With `dsn = true`, `queue fail ID` fails the pending recipients (5.3.0,
    "failed by an operator") and queues a report to the sender, which a worker
    delivers from the null sender; a second fail changes nothing."""
    server = smtp_server()
    config = write_config(tmp_path, server.port, extra="dsn = true")
    message_id = send(config, "doomed", "--in", "1d")
    code, out, err = queue(config, "fail", message_id)
    assert (code, out.split(), err.strip()) == (0, [message_id], "failed 1 message")
    [listed] = json.loads(queue(config, "list", "--json", message_id)[1])
    [recipient] = listed["recipients"]
    assert recipient["result"] == "failed"
    assert recipient["status_code"] == "5.3.0"
    assert recipient["detail"] == "failed by an operator"
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering")
        [report] = server.handler.wait_for(1, timeout=20)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
    assert report.mail_from in ("", "<>")
    assert list(report.rcpt_tos) == ["app@example.test"]
    assert b"failed by an operator" in report.data
    assert queue(config, "fail", message_id)[1:] == ("", "failed 0 messages\n")


def test_queue_fail_without_dsns_tells_no_one(tmp_path: Path) -> None:
    """Without DSNs, or with --db (no configuration), nothing is queued; fail
    with neither ids nor filter needs --all."""
    config = write_config(tmp_path, 25)
    first = send(config, "one", "--in", "1h")
    second = send(config, "two", "--in", "1h")
    assert queue(config, "fail")[0] == 2
    assert queue(config, "fail", first)[0] == 0
    done = run("queue", "fail", "--all", "--db", str(tmp_path / "outbox.db"))
    assert done.returncode == 0
    assert done.stdout.decode().split() == [second]
    assert "no delivery status notification" in done.stderr.decode()
    assert queue(config, "count", "--completed")[1].strip() == "2"
    assert queue(config, "count")[1].strip() == "2"


def test_the_sender_filter_selects_by_envelope_sender(tmp_path: Path) -> None:
    """--sender matches the envelope sender, ASCII case aside, on every
    command that takes filters."""
    config = write_config(tmp_path, 25)
    app = send(config, "a", "--in", "1h")
    ops = send(config, "b", "--in", "1h", sender="Ops@Example.TEST")
    code, out, _ = queue(config, "list", "--sender", "ops@example.test", "--json")
    assert code == 0 and [m["id"] for m in json.loads(out)] == [ops]
    assert queue(config, "count", "--sender", "APP@example.test")[1].strip() == "1"
    assert queue(config, "hold", "--sender", "ops@example.test")[1].split() == [ops]
    assert queue(config, "kick", "--sender", "app@example.test")[1].split() == [app]
    assert queue(config, "list", "--sender", "nobody@example.test")[1] == (
        "no message selected\n"
    )
    with contextlib.closing(SqliteStorage(tmp_path / "outbox.db")) as storage:
        assert [s.message_id for s in storage.find(QueueFilter(held=True))] == [ops]


def test_list_and_status_show_when_scheduled_mail_was_first_due(
    tmp_path: Path,
) -> None:
    """A message sent `--in 1h` is shown first due in an hour, its retries
    counted from then, in text and JSON, by `queue list` and `status`; a
    message sent now shows neither (they are its creation time)."""
    config = write_config(tmp_path, 25)
    sent = time.time()
    later = send(config, "later", "--in", "1h")
    now = send(config, "now")
    code, out, _ = queue(config, "list", "--json")
    assert code == 0
    shown = {m["id"]: m for m in json.loads(out)}
    first_due = datetime.fromisoformat(shown[later]["first_due"]).timestamp()
    assert sent + 3599 <= first_due <= time.time() + 3601
    assert shown[later]["retry_since"] == shown[later]["first_due"]
    assert (shown[now]["first_due"], shown[now]["retry_since"]) == (None, None)
    lines = queue(config, "list")[1].splitlines()
    [head] = [line for line in lines if line.startswith(later)]
    assert re.search(r"  first due in 5[89]m  retry since in 5[89]m  ", head)
    [plain] = [line for line in lines if line.startswith(now)]
    assert "first due" not in plain and "retry since" not in plain
    done = run("status", later, "--config", str(config))
    assert re.search(r"first due in 5[89]m", done.stdout.decode())
