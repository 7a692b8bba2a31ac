"""The Django email backend and worker command, with real Django.

Once ``EMAIL_BACKEND`` names the backend, Django's own mail API queues mail
in the configured SQLite file, and ``manage.py mailstrom_worker`` (or a
Mailstrom on the same file) delivers it to a loopback SMTP server. Django runs
in processes of its own, one per step, with the settings each test gives.
"""

from __future__ import annotations

import json
import signal
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from support.cli import config_text
from support.djangoproc import manage, run_django, worker_command
from support.smtpd import SmtpServer, SmtpServerFactory

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
)

pytest.importorskip("django")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def mailstrom_settings(server: SmtpServer, db: Path | None) -> dict[str, object]:
    """settings.MAILSTROM relaying to ``server``, with the queue in ``db``."""
    mapping: dict[str, object] = {
        "helo_name": "app.example.org",
        "delivery": {
            "kind": "relay",
            "host": server.host,
            "port": server.port,
            "tls": "none",
        },
        "retry": {"initial_delay": "1s"},
    }
    if db is not None:
        mapping["storage"] = {"sqlite": str(db)}
    return {"MAILSTROM": mapping}


def deliver(server: SmtpServer, db: Path, message_id: str) -> DeliveryResult:
    """Deliver the queue of ``db`` with a Mailstrom until ``message_id`` has
    its outcome; return it."""
    config = Config(
        helo_name="worker.example.org",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
    )
    with Mailstrom(config, SqliteStorage(db)) as mailer:
        status = mailer.wait(message_id, timeout=20)
    [recipient] = {r.result for r in status.recipients}
    return recipient


def test_send_mail_is_queued_and_the_management_command_delivers_it(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """With MAILSTROM_CONFIG naming a file, send_mail() returns 1 having
    started no thread, and manage.py mailstrom_worker delivers the message
    from DEFAULT_FROM_EMAIL, then stops with 0 on SIGTERM."""
    server = smtp_server()
    config = tmp_path / "mailstrom.toml"
    config.write_text(config_text(port=server.port, db=tmp_path / "outbox.db"))
    settings = {"MAILSTROM_CONFIG": str(config)}
    sent = run_django(
        """
        import threading
        from django.core.mail import send_mail
        count = send_mail("Hello", "Hi Bob.", None, ["Bob <bob@example.org>"])
        print(json.dumps([count, threading.active_count()]))
        """,
        settings,
        cwd=tmp_path,
    )
    assert sent == [1, 1]
    assert server.handler.messages == []
    with worker_command(settings, cwd=tmp_path) as worker:
        worker.wait_for_line("delivering")
        [received] = server.handler.wait_for(1, timeout=30)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
    assert received.mail_from == "app@example.org"
    assert received.rcpt_tos == ("bob@example.org",)
    parsed = message_from_bytes(received.data, policy=default)
    assert parsed["Subject"] == "Hello"
    assert parsed["From"] == "Example App <app@example.org>"
    assert parsed.get_content().strip() == "Hi Bob."


def test_alternatives_with_an_attachment_arrive_intact(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """An EmailMultiAlternatives with non-ASCII text, an HTML alternative and
    a binary attachment arrives with each part's content unchanged."""
    server = smtp_server()
    db = tmp_path / "outbox.db"
    message_id = run_django(
        f"""
        from django.core.mail import EmailMultiAlternatives
        message = EmailMultiAlternatives(
            "Bericht für Mai", "Grüße, see the logo.", "reports@example.org",
            ["bob@example.org"],
        )
        message.attach_alternative("<p>Grüße, see the <b>logo</b>.</p>", "text/html")
        message.attach("logo.png", {PNG!r}, "image/png")
        assert message.send() == 1
        print(json.dumps(message.mailstrom_id))
        """,
        mailstrom_settings(server, db),
        cwd=tmp_path,
    )
    assert isinstance(message_id, str)
    assert deliver(server, db, message_id) is DeliveryResult.DELIVERED
    [received] = server.handler.messages
    assert received.mail_from == "reports@example.org"
    parsed = message_from_bytes(received.data, policy=default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Bericht für Mai"
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text is not None and text.get_content().strip() == "Grüße, see the logo."
    assert html is not None
    assert html.get_content().strip() == "<p>Grüße, see the <b>logo</b>.</p>"
    [logo] = parsed.iter_attachments()
    assert (logo.get_filename(), logo.get_content_type()) == ("logo.png", "image/png")
    assert logo.get_payload(decode=True) == PNG


def test_bcc_recipients_get_the_message_but_no_header_names_them(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """Bcc addresses are envelope recipients, and no header of the message
    as delivered names them."""
    server = smtp_server()
    db = tmp_path / "outbox.db"
    message_id = run_django(
        """
        from django.core.mail import EmailMessage
        message = EmailMessage(
            "Minutes", "Attached.", to=["bob@example.org"],
            cc=["carol@example.org"], bcc=["Dave <dave@example.org>", "eve@example.org"],
        )
        assert message.send() == 1
        print(json.dumps(message.mailstrom_id))
        """,
        mailstrom_settings(server, db),
        cwd=tmp_path,
    )
    assert isinstance(message_id, str)
    assert deliver(server, db, message_id) is DeliveryResult.DELIVERED
    [received] = server.handler.messages
    assert set(received.rcpt_tos) == {
        "bob@example.org",
        "carol@example.org",
        "dave@example.org",
        "eve@example.org",
    }
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert b"dave@" not in head and b"eve@" not in head
    assert b"\nbcc:" not in head.lower()


SEND_GOOD_AND_BAD = """
from django.core.mail import EmailMessage, get_connection
from mailstrom_py import InvalidMessageError, StorageError

def batch():
    return [
        EmailMessage("One", "x", to=["bob@example.org"]),
        EmailMessage("Two", "x", to=["not an address"]),
        EmailMessage("Line\\nbreak", "x", to=["bob@example.org"]),
        EmailMessage("Four", "x", to=["carol@example.org"]),
    ]

result = {"silent": get_connection(fail_silently=True).send_messages(batch())}
try:
    get_connection().send_messages(batch())
except (InvalidMessageError, StorageError) as exc:
    result["loud"] = type(exc).__name__
print(json.dumps(result))
"""


def test_fail_silently_counts_what_was_queued_and_raises_otherwise(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """With fail_silently=True a bad address and a header line break are left
    out and the rest counted; without it the first bad message raises
    InvalidMessageError."""
    server = smtp_server()
    db = tmp_path / "outbox.db"
    result = run_django(SEND_GOOD_AND_BAD, mailstrom_settings(server, db), cwd=tmp_path)
    assert result == {"silent": 2, "loud": "InvalidMessageError"}
    storage = SqliteStorage(db)
    try:
        subjects = sorted(
            message_from_bytes(storage.email(s.message_id).data)["Subject"]
            for s in storage.find(QueueFilter())
        )
    finally:
        storage.close()
    # The loud batch queued its first message before raising at the second.
    assert subjects == ["Four", "One", "One"]


def test_fail_silently_covers_a_queue_that_cannot_be_opened(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """A queue file in a missing directory is a StorageError: 0 messages with
    fail_silently=True, raised otherwise."""
    server = smtp_server()
    db = tmp_path / "missing" / "outbox.db"
    result = run_django(SEND_GOOD_AND_BAD, mailstrom_settings(server, db), cwd=tmp_path)
    assert result == {"silent": 0, "loud": "StorageError"}


def test_a_worker_in_the_process_starts_once_and_delivers(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """With MAILSTROM_WORKER_IN_PROCESS = True the first message starts one
    Mailstrom for the process, which every later message uses and which
    delivers them, here from memory."""
    server = smtp_server()
    settings = {**mailstrom_settings(server, None), "MAILSTROM_WORKER_IN_PROCESS": True}
    result = run_django(
        """
        import threading
        from django.core.mail import send_mail
        from mailstrom_py import Mailstrom
        from mailstrom_py.contrib.django import close_outbox, get_outbox
        before = threading.active_count()
        send_mail("One", "x", None, ["bob@example.org"])
        first = get_outbox()
        send_mail("Two", "x", None, ["carol@example.org"])
        assert get_outbox() is first and isinstance(first, Mailstrom)
        statuses = [first.wait(s.message_id, 20) for s in first.list_messages()]
        results = [r.result.value for s in statuses for r in s.recipients]
        running = threading.active_count() > before
        close_outbox()
        print(json.dumps([before, running, results, first.closed]))
        """,
        settings,
        cwd=tmp_path,
    )
    assert result == [1, True, ["delivered", "delivered"], True]
    assert len(server.handler.messages) == 2


def test_a_forked_process_opens_an_outbox_of_its_own(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """A process forked after its parent opened the outbox (a server that
    loads the application, then forks) opens its own, and both queue."""
    server = smtp_server()
    db = tmp_path / "outbox.db"
    result = run_django(
        """
        import os
        from django.core.mail import send_mail
        from mailstrom_py.contrib.django import get_outbox
        send_mail("Parent", "x", None, ["bob@example.org"])
        parent = get_outbox()
        pid = os.fork()
        if pid == 0:
            send_mail("Child", "x", None, ["bob@example.org"])
            os._exit(0 if get_outbox() is not parent else 1)
        _, status = os.waitpid(pid, 0)
        print(json.dumps([status, parent.count_messages()]))
        """,
        mailstrom_settings(server, db),
        cwd=tmp_path,
    )
    assert result == [0, 2]


def test_a_backend_given_an_outbox_queues_there(tmp_path: Path) -> None:
    """get_connection(outbox=...) queues in the outbox given, reading no
    MAILSTROM setting."""
    result = run_django(
        """
        from django.core.mail import EmailMessage, get_connection
        from mailstrom_py import Config, MemoryStorage, Outbox, RelayConfig
        outbox = Outbox(Config("app.example.org", RelayConfig("127.0.0.1")),
                        MemoryStorage())
        connection = get_connection(outbox=outbox)
        count = connection.send_messages([
            EmailMessage("Hi", "x", to=["bob@example.org"]),
            EmailMessage("No one", "x"),
        ])
        print(json.dumps([count, outbox.count_messages()]))
        """,
        {},
        cwd=tmp_path,
    )
    assert result == [1, 1]


def test_a_queue_in_memory_without_a_worker_is_improperly_configured(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """Settings without [storage] and without a worker in the process would
    lose the mail: ImproperlyConfigured, even with fail_silently=True."""
    server = smtp_server()
    result = run_django(
        """
        from django.core.exceptions import ImproperlyConfigured
        from django.core.mail import send_mail
        try:
            send_mail("Hi", "x", None, ["bob@example.org"], fail_silently=True)
        except ImproperlyConfigured as exc:
            print(json.dumps(str(exc)))
        """,
        mailstrom_settings(server, None),
        cwd=tmp_path,
    )
    assert isinstance(result, str)
    assert "MAILSTROM_WORKER_IN_PROCESS" in result
    assert "sqlite" in result


def test_the_worker_command_exits_2_without_settings(tmp_path: Path) -> None:
    """Without MAILSTROM_CONFIG or MAILSTROM the command says so and exits 2,
    as mailstrom-py worker does for a bad configuration."""
    done = manage("mailstrom_worker", settings={}, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "MAILSTROM_CONFIG" in done.stderr
    assert "MAILSTROM" in done.stderr


def test_the_worker_command_takes_the_logging_options(tmp_path: Path) -> None:
    """manage.py mailstrom_worker --help lists --log-level and --log-format."""
    done = manage("mailstrom_worker", "--help", settings={}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--log-level" in done.stdout
    assert "--log-format" in done.stdout


def test_the_test_settings_reach_the_child(tmp_path: Path) -> None:
    """The settings a test gives are the child's (a guard for the tests above)."""
    got = run_django(
        """
        from django.conf import settings
        print(json.dumps([settings.EMAIL_BACKEND, settings.MAILSTROM]))
        """,
        {"MAILSTROM": {"marker": 1}},
        cwd=tmp_path,
    )
    assert got == [
        "mailstrom_py.contrib.django.EmailBackend",
        json.loads('{"marker": 1}'),
    ]
