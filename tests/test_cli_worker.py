"""``mailstrom-py worker`` as a daemon: delivery, signals, exit status, logs,
and systemd's readiness protocol, each through the real command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import Daemon, config_text, run
from support.scripted import Conversation, ScriptedServerFactory, normal
from support.smtpd import SmtpServerFactory

from mailstrom_py.cli.logs import JsonFormatter

MESSAGE = (
    b"From: App <app@example.test>\n"
    b"To: alice@example.test\n"
    b"Subject: from the queue\n"
    b"\n"
    b"Delivered by the worker.\n"
)
REPORT = (
    b"From: Reports <reports@example.test>\n"
    b"To: alice@example.test\n"
    b"Cc: bob@example.test\n"
    b"Bcc: audit@example.test\n"
    b"Subject: nightly report\n"
    b"\n"
    b"All done.\n"
)


def write_config(tmp_path: Path, port: int, **settings: str) -> Path:
    path = tmp_path / "mailstrom.toml"
    text = config_text(port=port, db=tmp_path / "outbox.db", **settings)
    path.write_text(text, encoding="utf-8")
    return path


def queue_message(config: Path, message: bytes = MESSAGE, *options: str) -> str:
    """Queue ``message`` with ``send -t -v``; return its id."""
    done = run("send", "--config", str(config), "-t", "-v", *options, input=message)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split()[-1]


def status(config: Path, message_id: str) -> dict[str, object]:
    done = run("status", message_id, "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def results(config: Path, message_id: str) -> list[object]:
    recipients = status(config, message_id)["recipients"]
    assert isinstance(recipients, list)
    return [r["result"] for r in recipients]


class SlowDot:
    """A scripted server that reads the message, notes it, and answers the
    final dot only after ``delay`` seconds (or once released)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.dot_seen = threading.Event()
        self.replied = threading.Event()
        self.release = threading.Event()

    def on_dot(self, conv: Conversation, body: bytes) -> str:
        self.dot_seen.set()
        self.release.wait(self.delay)
        self.replied.set()
        return "250 2.0.0 queued after a while"


@pytest.fixture
def slow_dot(scripted_server: ScriptedServerFactory) -> Iterator[tuple[SlowDot, int]]:
    script = SlowDot(delay=2.0)
    server = scripted_server(normal(on_dot=script.on_dot))
    yield script, server.port
    script.release.set()


def test_a_worker_delivers_what_send_queued(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """A worker started from a configuration file delivers what `send -t -f`
    put in its queue as sendmail would (MAIL FROM the -f address, RCPT TO
    each of To, Cc and Bcc, no Bcc field), and a SIGTERM then stops it with
    status 0."""
    server = smtp_server()
    config = write_config(tmp_path, server.port)
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering through 127.0.0.1")
        message_id = queue_message(config, REPORT, "-f", "bounces@example.test")
        [received] = server.handler.wait_for(1, timeout=20)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
    assert received.mail_from == "bounces@example.test"
    assert received.rcpt_tos == (
        "alice@example.test",
        "bob@example.test",
        "audit@example.test",
    )
    assert b"All done." in received.data
    assert b"Bcc" not in received.data and b"audit" not in received.data
    assert results(config, message_id) == ["delivered"] * 3
    worker.wait_for_line("SIGTERM received")
    worker.wait_for_line("stopped")


def test_sigterm_during_a_slow_transaction_lets_it_finish(
    tmp_path: Path, slow_dot: tuple[SlowDot, int]
) -> None:
    """A SIGTERM while the server holds its reply to the final dot for two
    seconds lets that transaction end: the reply is read and recorded as
    delivered, and only then does the worker exit 0."""
    script, port = slow_dot
    config = write_config(tmp_path, port)
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering")
        message_id = queue_message(config)
        assert script.dot_seen.wait(20), worker.stderr
        worker.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert worker.wait() == 0, worker.stderr
        took = time.monotonic() - signalled
    assert script.replied.is_set()
    assert took >= 1.0, f"exited {took:.2f} s after SIGTERM, before the reply"
    assert results(config, message_id) == ["delivered"]


def test_a_second_signal_stops_the_worker_at_once(
    tmp_path: Path, slow_dot: tuple[SlowDot, int]
) -> None:
    """While a stop waits for a transaction, a second signal ends the worker
    at once with 128 + the signal's number, and the message is not marked
    delivered."""
    script, port = slow_dot
    script.delay = 60.0
    config = write_config(tmp_path, port)
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering")
        message_id = queue_message(config)
        assert script.dot_seen.wait(20), worker.stderr
        worker.signal(signal.SIGTERM)
        worker.wait_for_line("SIGTERM received")
        worker.signal(signal.SIGINT)
        signalled = time.monotonic()
        assert worker.wait(timeout=10) == 130, worker.stderr
        assert time.monotonic() - signalled < 5
    assert not script.replied.is_set()
    worker.wait_for_line("SIGINT received again: exiting at once")
    assert results(config, message_id) == ["queued"]


# tgkill(2) by architecture: a signal for one thread of another process.
_TGKILL = {"x86_64": 234, "aarch64": 131}
# poll(2) and ppoll(2) by architecture: where a thread waits on a socket.
_POLLS = {"x86_64": {"7", "271"}, "aarch64": {"73"}}


def _thread_waiting_on_a_socket(pid: int) -> int:
    """The worker thread blocked in poll(2), which is the delivery thread
    waiting for the slow reply to the dot: it outlives the stop's start,
    where idle threads may end between a listing and a signal."""
    polls = _POLLS[os.uname().machine]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                syscall = (task / "syscall").read_text().split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(task.name) != pid and syscall in polls:
                return int(task.name)
        time.sleep(0.05)
    raise AssertionError("no worker thread waits on a socket")


def _signal_thread(pid: int, tid: int, signum: int) -> None:
    import ctypes  # noqa: PLC0415 (only this test calls into libc)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_TGKILL[os.uname().machine], pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


@pytest.mark.skipif(
    os.uname().machine not in _TGKILL or not sys.platform.startswith("linux"),
    reason="needs Linux's tgkill on a known architecture",
)
@pytest.mark.parametrize("stage", ["first", "second"])
def test_a_signal_taken_by_another_thread_is_heeded(
    tmp_path: Path, slow_dot: tuple[SlowDot, int], stage: str
) -> None:
    """The kernel may hand a process's signal to any of its threads: a stop
    signal taken by a delivery thread starts the stop (the first) or ends the
    worker at once (the second) as if the main thread had taken it."""
    script, port = slow_dot
    script.delay = 60.0
    config = write_config(tmp_path, port)
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering")
        queue_message(config)
        assert script.dot_seen.wait(20), worker.stderr
        pid = worker.process.pid
        delivering = _thread_waiting_on_a_socket(pid)
        if stage == "second":
            worker.signal(signal.SIGTERM)
            worker.wait_for_line("SIGTERM received")
            _signal_thread(pid, delivering, signal.SIGINT)
            assert worker.wait(timeout=10) == 130, worker.stderr
        else:
            _signal_thread(pid, delivering, signal.SIGTERM)
            worker.wait_for_line("SIGTERM received", timeout=10)
            script.release.set()
            assert worker.wait(timeout=20) == 0, worker.stderr


def test_sigint_stops_an_idle_worker_with_status_0(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """Ctrl-C (SIGINT) stops the worker as gracefully as SIGTERM does."""
    config = write_config(tmp_path, smtp_server().port)
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering")
        worker.signal(signal.SIGINT)
        assert worker.wait() == 0, worker.stderr
    assert "Traceback" not in worker.stderr


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (
            'helo_name = "app.example.test"\n[delivery]\nkind = "relay"\nhots = "x"\n',
            'delivery.hots: unknown key for kind "relay" (did you mean "host"?)',
        ),
        (
            'helo_name = "app.example.test"\n[delivery]\nkind = "relay"\n'
            'host = "127.0.0.1"\n',
            "the queue would be kept in the memory of one process",
        ),
        (
            'helo_name = "app.example.test"\n[delivery]\nkind = "relay"\n'
            'host = "127.0.0.1"\n[storage]\nsqlite = "outbox.db"\n'
            "max_connections = 4\n",
            "storage.max_connections: is only used with postgres",
        ),
    ],
    ids=["unknown-key", "memory-storage", "postgres-setting-for-sqlite"],
)
def test_a_bad_configuration_exits_2_with_the_reason(
    tmp_path: Path, settings: str, error: str
) -> None:
    """A configuration the worker cannot use is named on stderr, with the
    reason, and the worker exits 2 at once, as `config check` does."""
    config = tmp_path / "bad.toml"
    config.write_text(settings, encoding="utf-8")
    done = run("worker", "--config", str(config), timeout=30)
    assert done.returncode == 2
    assert error in done.stderr.decode()
    assert b"Traceback" not in done.stderr


def test_a_worker_delivers_from_a_queue_in_postgresql(
    tmp_path: Path, smtp_server: SmtpServerFactory, postgres_dsn: str
) -> None:
    """With [storage] postgres = "dsn", `send` queues in PostgreSQL, a worker
    delivers from there, and `status` reads the outcome there."""
    server = smtp_server()
    config = tmp_path / "mailstrom.toml"
    text = config_text(port=server.port, db=None)
    config.write_text(
        text + f"\n[storage]\npostgres = {json.dumps(postgres_dsn)}\n",
        encoding="utf-8",
    )
    with Daemon("worker", "--config", str(config)) as worker:
        worker.wait_for_line("delivering through 127.0.0.1")
        message_id = queue_message(config)
        [received] = server.handler.wait_for(1, timeout=20)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
    assert b"Delivered by the worker." in received.data
    assert results(config, message_id) == ["delivered"]
    worker.wait_for_line("from PostgreSQL")


def test_a_missing_configuration_file_exits_2(tmp_path: Path) -> None:
    """A configuration file that does not exist is a bad configuration."""
    done = run("worker", "--config", str(tmp_path / "nowhere.toml"), timeout=30)
    assert done.returncode == 2
    assert b"nowhere.toml: cannot read the file" in done.stderr


def test_a_queue_that_cannot_be_opened_exits_1(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """An SQLite file in a directory that does not exist is a runtime
    failure: the worker logs why and exits 1."""
    config = tmp_path / "mailstrom.toml"
    text = config_text(port=smtp_server().port, db=tmp_path / "no" / "outbox.db")
    config.write_text(text, encoding="utf-8")
    done = run("worker", "--config", str(config), timeout=30)
    assert done.returncode == 1
    assert b"cannot open the queue" in done.stderr
    assert b"Traceback" not in done.stderr


def test_json_logs_are_one_object_per_line(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """--log-format json writes each record as one JSON object (time, level,
    logger, message) on a line of its own, overriding the file's format."""
    config = write_config(
        tmp_path, smtp_server().port, logging='level = "INFO"\nformat = "text"'
    )
    with Daemon("worker", "--config", str(config), "--log-format", "json") as worker:
        worker.wait_for_line("delivering")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
    records = [json.loads(line) for line in worker.lines]
    assert len(records) >= 3
    for record in records:
        assert set(record) == {"time", "level", "logger", "message"}
        assert record["time"].endswith("Z")
    assert records[0]["level"] == "INFO"
    assert records[0]["logger"] == "mailstrom_py.cli.worker"


def test_the_log_level_option_overrides_the_file(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """--log-level info shows the INFO lines a file's WARNING level hides."""
    config = write_config(
        tmp_path, smtp_server().port, logging='level = "WARNING"\nformat = "json"'
    )
    quiet = run("worker", "--config", str(config), "--log-level", "nonsense")
    assert quiet.returncode == 2  # a usage error, before anything starts
    with Daemon("worker", "--config", str(config), "--log-level", "info") as worker:
        line = worker.wait_for_line("delivering")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    assert json.loads(line)["level"] == "INFO"


@pytest.mark.parametrize("namespace", ["path", "abstract"])
def test_the_worker_tells_systemd_when_it_is_ready_and_stopping(
    tmp_path: Path, smtp_server: SmtpServerFactory, namespace: str
) -> None:
    """With $NOTIFY_SOCKET set, as systemd sets it for Type=notify, the worker
    sends READY=1 once delivering and STOPPING=1 when a stop begins, as
    datagrams to that Unix socket (a file, or an @abstract name)."""
    config = write_config(tmp_path, smtp_server().port)
    with (
        tempfile.TemporaryDirectory() as short,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener,
    ):
        if namespace == "path":
            address = str(Path(short, "notify"))  # short: sun_path is 108 bytes
            listener.bind(address)
        else:
            name = f"mailstrom-test-{Path(short).name}"
            listener.bind("\0" + name)
            address = "@" + name
        listener.settimeout(20)
        env = {"NOTIFY_SOCKET": address}
        with Daemon("worker", "--config", str(config), env=env) as worker:
            ready = listener.recv(4096).decode()
            assert "READY=1" in ready.splitlines()
            worker.wait_for_line("delivering")  # logged before READY
            worker.signal(signal.SIGTERM)
            stopping = listener.recv(4096).decode()
            assert "STOPPING=1" in stopping.splitlines()
            assert worker.wait() == 0


def test_a_json_record_with_a_traceback_stays_on_one_line() -> None:
    """A record with line breaks in its message and a traceback is still one
    line of JSON, the traceback under "exception"."""
    formatter = JsonFormatter()
    try:
        raise RuntimeError("storage went away")
    except RuntimeError:
        record = logging.LogRecord(
            "mailstrom_py.worker",
            logging.ERROR,
            __file__,
            1,
            "attempts on %s failed\nsee below",
            ("m1@example.test",),
            sys.exc_info(),
        )
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "attempts on m1@example.test failed\nsee below"
    assert entry["level"] == "ERROR"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("RuntimeError: storage went away")
