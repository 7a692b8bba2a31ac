"""``mailstrom-py send``, the sendmail of the queue: options, what it stores,
and sendmail's exit statuses, each through the real command line."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import child_env, config_text, run
from support.smtpd import SmtpServerFactory

HELO = "app.example.test"

REPORT = (
    b"From: Reports <reports@example.test>\n"
    b"To: alice@example.test\n"
    b"Cc: Bob <bob@example.test>\n"
    b"Bcc: audit@example.test\n"
    b"Subject: nightly report\n"
    b"\n"
    b"All done.\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration file relaying to port 25 (never dialled: send only
    queues), with its queue in outbox.db."""
    path = tmp_path / "mailstrom.toml"
    path.write_text(
        config_text(port=25, db=tmp_path / "outbox.db", helo_name=HELO),
        encoding="utf-8",
    )
    return path


def send(
    config: Path, *args: str, message: bytes = REPORT
) -> subprocess.CompletedProcess[bytes]:
    return run("send", "--config", str(config), *args, input=message)


def queued(config: Path) -> list[dict[str, object]]:
    """Every queued message as `queue show --json` shows it, oldest first."""
    listed = run("queue", "list", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    shown = []
    for message in json.loads(listed.stdout):
        done = run("queue", "show", message["id"], "--config", str(config), "--json")
        assert done.returncode == 0, done.stderr
        entry = json.loads(done.stdout)
        entry["data"] = base64.b64decode(entry.pop("data_base64"))
        entry["results"] = [r["result"] for r in message["recipients"]]
        shown.append(entry)
    return shown


def test_t_takes_to_cc_and_bcc_and_removes_bcc(config: Path) -> None:
    """`send -t -f SENDER` queues what sendmail would: To, Cc and Bcc as
    recipients, the Bcc field gone from the stored bytes, SENDER as the
    envelope sender, and prints nothing."""
    done = send(config, "-t", "-f", "bounces@example.test")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    [message] = queued(config)
    assert message["recipients"] == [
        "alice@example.test",
        "bob@example.test",
        "audit@example.test",
    ]
    assert message["sender"] == "bounces@example.test"
    data = message["data"]
    assert isinstance(data, bytes)
    assert b"Bcc" not in data and b"audit@" not in data
    assert data.startswith(b"From: Reports <reports@example.test>\r\n")
    assert b"\r\nCc: Bob <bob@example.test>\r\n" in data


def test_send_stores_and_delivers_nothing(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """With a live server at the configured address, `send` only queues:
    after it has exited the server has seen no connection, and the
    recipient is still queued."""
    server = smtp_server()
    path = tmp_path / "live.toml"
    path.write_text(
        config_text(port=server.port, db=tmp_path / "live.db"), encoding="utf-8"
    )
    assert send(path, "-t").returncode == 0
    [message] = queued(path)
    assert message["results"] == ["queued", "queued", "queued"]
    assert server.handler.connections == 0


def test_the_sender_defaults_to_the_from_field(config: Path) -> None:
    """Without -f the envelope sender is the From field's address."""
    assert send(config, "-t").returncode == 0
    assert queued(config)[0]["sender"] == "reports@example.test"


@pytest.mark.parametrize(
    ("options", "kept"),
    [([], False), (["-i"], True), (["-oi"], True), (["-o", "i"], True)],
    ids=["default", "-i", "-oi", "-o-i"],
)
def test_a_lone_dot_ends_standard_input_unless_told_otherwise(
    config: Path, options: list[str], kept: bool
) -> None:
    """A line holding a single dot ends the message read from standard input,
    as in sendmail, unless -i or -oi is given."""
    message = REPORT + b".\nafter the dot\n"
    assert send(config, "-t", *options, message=message).returncode == 0
    data = queued(config)[0]["data"]
    assert isinstance(data, bytes)
    assert data.endswith(
        b"All done.\r\n.\r\nafter the dot\r\n" if kept else b"All done.\r\n"
    )


def test_recipients_come_from_the_arguments(config: Path) -> None:
    """Without -t the recipients are the arguments (after --, as a list, or
    with a name), and the To field is not read for recipients."""
    done = send(
        config,
        "-i",
        "--",
        "carol@example.test, Dan <dan@example.test>",
        "erin@example.test",
    )
    assert done.returncode == 0, done.stderr
    assert queued(config)[0]["recipients"] == [
        "carol@example.test",
        "dan@example.test",
        "erin@example.test",
    ]


def test_t_adds_the_arguments_to_the_fields_recipients(config: Path) -> None:
    """With -t, recipients given as arguments are added to those of the
    fields, as Postfix does."""
    assert send(config, "-t", "extra@example.test").returncode == 0
    assert queued(config)[0]["recipients"] == [
        "alice@example.test",
        "bob@example.test",
        "audit@example.test",
        "extra@example.test",
    ]


def test_a_cron_message_is_completed(config: Path) -> None:
    """What cron sends (user names without domain, its usual options) is
    queued with each name qualified with the HELO name."""
    cron = (
        b"From: root (Cron Daemon)\n"
        b"To: root\n"
        b"Subject: Cron <root@host> run-parts /etc/cron.daily\n"
        b"\n"
        b"backup done\n"
    )
    done = send(
        config, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root", message=cron
    )
    assert done.returncode == 0, done.stderr
    [message] = queued(config)
    assert message["recipients"] == [f"root@{HELO}"]
    assert message["sender"] == f"root@{HELO}"
    data = message["data"]
    assert isinstance(data, bytes)
    assert data.startswith(
        f"From: Cron Daemon <root@{HELO}>\r\nTo: root@{HELO}\r\n".encode()
    )


def test_a_bare_body_gets_a_header(config: Path) -> None:
    """Text without any header field becomes the body of a message From the
    envelope sender, with -F's full name."""
    done = send(
        config,
        "-f",
        "backup@example.test",
        "-F",
        "Backup Job",
        "alice@example.test",
        message=b"The backup finished.\n",
    )
    assert done.returncode == 0, done.stderr
    data = queued(config)[0]["data"]
    assert isinstance(data, bytes)
    assert data.startswith(b"From: Backup Job <backup@example.test>\r\n")
    assert data.endswith(b"\r\n\r\nThe backup finished.\r\n")


@pytest.mark.parametrize(
    "ignored",
    [
        ["-odi"],
        ["-oem"],
        ["-oQ/var/spool/mqueue"],
        ["-O", "DeliveryMode=background"],
        ["-B", "8BITMIME"],
        ["-N", "never"],
        ["-R", "hdrs"],
        ["-V", "envid"],
        ["-X", "/dev/null"],
        ["-L", "tag"],
        ["-h", "17"],
        ["-Am"],
        ["-em"],
        ["-bm"],
        ["-m", "-n", "-U", "-G"],
    ],
    ids=" ".join,
)
def test_sendmail_options_that_change_nothing_are_accepted(
    config: Path, ignored: list[str]
) -> None:
    """Options sendmail takes for its own queue, logging or DSN are accepted
    and ignored."""
    done = send(config, *ignored, "alice@example.test")
    assert done.returncode == 0, done.stderr


def test_the_configuration_comes_from_the_environment(config: Path) -> None:
    """Without --config, the file $MAILSTROM_CONFIG names is used."""
    done = run("send", "-t", input=REPORT, env={"MAILSTROM_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert len(queued(config)) == 1


def test_without_a_configuration_the_default_file_is_named() -> None:
    """With neither --config nor $MAILSTROM_CONFIG, /etc/mailstrom/mailstrom.toml
    is read, and its absence is a configuration error (78)."""
    if os.path.exists("/etc/mailstrom/mailstrom.toml"):
        pytest.skip("this machine has a configuration file there")
    done = run("send", "-t", input=REPORT)
    assert done.returncode == 78
    assert b"/etc/mailstrom/mailstrom.toml: cannot read the file" in done.stderr


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        (["-q"], 64, "option -q not recognized"),
        (["-bp"], 64, "-bp is not supported"),
        ([], 64, "no recipients given"),
        (["-f", "<>", "a@example.test"], 64, "null sender"),
        (["bad address@@example.test"], 65, "invalid message"),
        (["--file", "/nonexistent/message.eml", "a@example.test"], 66, "No such file"),
    ],
    ids=[
        "unknown-option",
        "other-mode",
        "no-recipient",
        "null-sender",
        "bad-rcpt",
        "no-file",
    ],
)
def test_failures_exit_with_sendmails_statuses(
    config: Path, args: list[str], status: int, says: str
) -> None:
    """Each failure has its sysexits.h status and a reason on stderr, and
    nothing is queued."""
    done = send(config, *args)
    assert done.returncode == status
    assert says in done.stderr.decode()
    assert b"Traceback" not in done.stderr
    if (Path(config).parent / "outbox.db").exists():
        assert queued(config) == []


def test_a_message_id_queued_already_is_a_data_error(config: Path) -> None:
    """A second message with a queued Message-ID is refused with 65."""
    message = b"Message-ID: <once@example.test>\n" + REPORT
    assert send(config, "-t", message=message).returncode == 0
    again = send(config, "-t", message=message)
    assert again.returncode == 65
    assert b"once@example.test" in again.stderr
    assert len(queued(config)) == 1


def test_a_queue_that_cannot_be_opened_is_a_temporary_failure(tmp_path: Path) -> None:
    """Storage that cannot be opened exits 75 (EX_TEMPFAIL): not queued, try
    again later."""
    path = tmp_path / "mailstrom.toml"
    path.write_text(
        config_text(port=25, db=tmp_path / "missing" / "outbox.db"), encoding="utf-8"
    )
    done = send(path, "-t")
    assert done.returncode == 75
    assert b"the message was not queued" in done.stderr


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            'helo_name = "x.example"\n[delivery]\nkind = "relais"\n',
            'did you mean "relay"',
        ),
        (
            'helo_name = "x.example"\n[delivery]\nkind = "relay"\nhost = "127.0.0.1"\n',
            "kept in the memory of one process",
        ),
    ],
    ids=["bad-key", "memory-storage"],
)
def test_a_bad_configuration_exits_78(tmp_path: Path, text: str, says: str) -> None:
    """A configuration `send` cannot use exits 78 (EX_CONFIG) with the reason."""
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    done = send(path, "-t")
    assert done.returncode == 78
    assert says in done.stderr.decode()


def test_invoked_as_sendmail_it_is_send(config: Path, tmp_path: Path) -> None:
    """Through a link named sendmail to the console script, the program reads
    sendmail's options, as /usr/sbin/sendmail would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "mailstrom-py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from mailstrom_py.cli import main\n"
        "sys.exit(main())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    (bin_dir / "sendmail").symlink_to("mailstrom-py")
    done = subprocess.run(
        [str(bin_dir / "sendmail"), "-t", "-i"],
        input=REPORT,
        capture_output=True,
        env=child_env({"MAILSTROM_CONFIG": str(config)}),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(queued(config)) == 1
    wrong = subprocess.run(
        [str(bin_dir / "sendmail"), "-q"],
        capture_output=True,
        env=child_env({"MAILSTROM_CONFIG": str(config)}),
        timeout=60,
        check=False,
    )
    assert wrong.returncode == 64
    assert wrong.stderr.startswith(b"sendmail: ")
