"""Durability of SqliteStorage: crashes, disk faults, restarts and clock jumps.

Crash tests run the mailer in a child process and kill it with SIGKILL at a
random point, then reopen the file in this process. Disk faults are injected
with ``strace`` (skipped where it is missing or cannot trace). Restarts are
new ``Mailstrom`` and ``SqliteStorage`` objects on the same file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.children import integrity, kill, readline, spawn, wait_until
from support.scripted import ScriptedServer, silent_after_dot
from support.smtpd import RecordingHandler, SmtpServer

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    QueueFilter,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Timeouts,
    prepare_email,
)

STRACE = shutil.which("strace")

SENDER_HEAD = """
import os, sys, threading
from mailstrom_py import *
path, port = sys.argv[1], int(sys.argv[2])
config = Config(
    helo_name="crash.example.test",
    delivery=RelayConfig(host="127.0.0.1", port=port, tls="none"),
    retry=RetryPolicy(initial_delay=float(sys.argv[3]), jitter=0.0),
    timeouts=Timeouts.uniform(30),
)
def raw(subject, to="b@example.test", message_id=None):
    head = f"Message-ID: <{message_id}>\\r\\n" if message_id else ""
    return (f"From: a@example.test\\r\\nTo: {to}\\r\\n{head}Subject: {subject}\\r\\n"
            f"\\r\\nbody {subject}\\r\\n").encode()
"""

ENQUEUE_FOREVER = (
    SENDER_HEAD
    + """
mailer = Mailstrom(config, SqliteStorage(path))
def loop(k):
    n = 0
    while True:
        message_id = mailer.send_email(raw(f"{k}-{n}"))
        os.write(1, (message_id + "\\n").encode())  # one atomic write per id
        n += 1
for k in range(4):
    threading.Thread(target=loop, args=(k,), daemon=True).start()
threading.Event().wait()
"""
)

SEND_AND_DELIVER = (
    SENDER_HEAD
    + """
mailer = Mailstrom(config, SqliteStorage(path))
mailer.start()
print(mailer.send_email(raw("in flight", to=sys.argv[4])), flush=True)
threading.Event().wait()
"""
)

FAULTY_DISK = (
    SENDER_HEAD
    + """
import signal
try:
    mailer = Mailstrom(config, SqliteStorage(path))
except StorageError as exc:
    print("open-refused", exc, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
def send(n):
    try:
        print("stored", mailer.send_email(raw(n, message_id=f"n{n}@crash.test")),
              flush=True)
    except StorageError as exc:
        print("refused", f"n{n}@crash.test", exc, flush=True)
send(1)
send(2)
os.write(2, b"MARK\\n")  # the faults are injected from here on
send(3)
send(4)
os.kill(os.getpid(), signal.SIGKILL)  # no clean close: recovery must cope
"""
)


def config_for(port: int, **retry: Any) -> Config:
    return Config(
        helo_name="restart.example.test",
        delivery=RelayConfig(host="127.0.0.1", port=port, tls="none"),
        retry=RetryPolicy(**{"initial_delay": 60, "jitter": 0.0, **retry}),
        timeouts=Timeouts.uniform(10),
    )


def received_ids(handler: RecordingHandler) -> list[str]:
    found = []
    for received in handler.messages:
        match = re.search(rb"^Message-ID: <([^>]+)>", received.data, re.M | re.I)
        assert match is not None
        found.append(match.group(1).decode())
    return found


def strace(output: str, *expressions: str) -> list[str]:
    """The strace command line that runs a child under these -e expressions."""
    assert STRACE is not None
    return [
        STRACE,
        "-f",
        "-qq",
        "-o",
        output,
        *(a for e in expressions for a in ("-e", e)),
    ]


class SlowRcpt(RecordingHandler):
    """Holds every RCPT for `rcpt_delay` seconds: a transaction stuck before the dot."""

    def __init__(self, rcpt_delay: float) -> None:
        super().__init__()
        self.rcpt_delay = rcpt_delay

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        await asyncio.sleep(self.rcpt_delay)
        return await super().handle_RCPT(server, session, envelope, address, options)


class TestKilledWhileEnqueueing:
    def test_every_returned_id_survives_and_is_delivered_once(
        self, tmp_path: Path
    ) -> None:
        """H1: ids printed after send_email() returned are all there after kill -9, and
        each is delivered exactly once after a restart; integrity_check stays ok."""
        db = tmp_path / "outbox.db"
        rng = random.Random()
        printed: list[str] = []
        for kills in range(1, 4):
            proc = spawn(ENQUEUE_FOREVER, db, 9, 60)
            for _ in range(rng.randint(5, 40)):  # then kill wherever it is
                printed.append(readline(proc))
            printed += kill(proc)
            assert integrity(db) == "ok"
            storage = SqliteStorage(db)
            for message_id in printed:
                assert storage.status(message_id).recipients[0].attempts == 0
            stored = {s.message_id for s in storage.find(QueueFilter())}
            storage.close()
            assert stored >= set(printed)
            # At most one id per sending thread was committed but not yet
            # printed when each kill came.
            assert len(stored) <= len(printed) + 4 * kills

        with (
            SmtpServer() as server,
            Mailstrom(config_for(server.port), SqliteStorage(db)) as mailer,
        ):
            for message_id in stored:
                assert mailer.wait(message_id, timeout=60).succeeded
            assert sorted(received_ids(server.handler)) == sorted(stored)


class TestKilledDuringAnAttempt:
    @pytest.mark.parametrize("moment", ["before the dot", "after the dot"])
    def test_the_attempt_is_retried_at_its_time_not_lost_nor_looped(
        self, tmp_path: Path, moment: str
    ) -> None:
        """H2: after kill -9 mid-attempt the message waits for its retry time, then is
        delivered; the server got it twice only when the kill came after the dot."""
        db = tmp_path / "outbox.db"
        after_dot = moment == "after the dot"
        handler = RecordingHandler(data_delay=5) if after_dot else SlowRcpt(5)
        with SmtpServer(handler=handler) as server:
            proc = spawn(SEND_AND_DELIVER, db, server.port, 60, "b@example.test")
            message_id = readline(proc)
            if after_dot:
                handler.wait_until(lambda: handler.transactions == 1, timeout=20)
            else:
                handler.wait_until(lambda: "RCPT" in handler.commands, timeout=20)
            threading.Event().wait(random.uniform(0, 1))  # a random moment within it
            killed_at = time.time()
            kill(proc)
            handler.data_delay = 0
            if isinstance(handler, SlowRcpt):
                handler.rcpt_delay = 0
            assert integrity(db) == "ok"

            mailer = Mailstrom(config_for(server.port), SqliteStorage(db))
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.attempts) == (DeliveryResult.QUEUED, 1)
            assert r.next_attempt_at is not None
            assert r.next_attempt_at > killed_at + 50  # its retry time, not now
            assert mailer.run_once(time.time()) == 0  # so no hot loop
            assert mailer.run_once(r.next_attempt_at) == 1
            assert mailer.query_status(message_id).succeeded
            mailer.stop()
            # aiosmtpd drops a transaction whose client vanished before its reply
            # (a real server may have queued it: the duplicate at-least-once
            # allows). Whole copies reached it twice only if the kill came after
            # the dot.
            assert handler.transactions == (2 if after_dot else 1)
            assert received_ids(handler) == [message_id]
            assert handler.errors == []

    def test_delivered_recipients_are_not_sent_again(self, tmp_path: Path) -> None:
        """H3: after a partial delivery (C9) and kill -9 during the next attempt, the
        restart sends only to the recipient still pending."""
        db = tmp_path / "outbox.db"
        handler = SlowRcpt(rcpt_delay=0)
        with SmtpServer(handler=handler) as server:
            proc = spawn(
                SEND_AND_DELIVER,
                db,
                server.port,
                2,
                "one@example.test, t4@example.test",
            )
            message_id = readline(proc)
            watcher = SqliteStorage(db)
            wait_until(
                lambda: (
                    watcher.status(message_id).recipient("one@example.test").completed
                )
            )
            watcher.close()
            handler.rcpt_delay = 5  # the retry for t4 hangs at its RCPT
            handler.wait_until(lambda: handler.commands.count("RCPT") == 3)
            kill(proc)
            handler.rcpt_delay = 0

            mailer = Mailstrom(config_for(server.port), SqliteStorage(db))
            status = mailer.query_status(message_id)
            assert (
                status.recipient("one@example.test").result is DeliveryResult.DELIVERED
            )
            assert mailer.run_once(time.time() + 3600) == 1
            status = mailer.query_status(message_id)
            mailer.stop()
            rcpts = [
                line
                for session in handler.sessions
                for line in session.commands
                if line.startswith("RCPT")
            ]
        assert status.recipient("t4@example.test").attempts == 3
        assert rcpts.count("RCPT TO:<one@example.test>") == 1
        assert rcpts.count("RCPT TO:<t4@example.test>") == 3
        assert received_ids(handler) == [message_id]


def strace_works() -> bool:
    if STRACE is None:
        return False
    done = subprocess.run(
        [STRACE, "-f", "-qq", "-e", "trace=getpid", "true"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


needs_strace = pytest.mark.skipif(
    not strace_works(), reason="strace is missing or cannot trace here"
)


@needs_strace
class TestDiskFaults:
    """H4 and H5: a failing disk fails send_email(), and nothing refused comes back."""

    @staticmethod
    def calls_before_mark(db: Path, syscalls: str) -> int:
        """Run the script untouched and count `syscalls` made before the fault point."""
        assert STRACE is not None
        log = db.with_suffix(".trace")
        proc = spawn(
            FAULTY_DISK,
            db,
            9,
            60,
            prefix=strace(str(log), f"trace={syscalls},write"),
        )
        proc.communicate(timeout=60)
        lines = log.read_text().splitlines()
        mark = next(n for n, line in enumerate(lines) if '"MARK\\n"' in line)
        wanted = tuple(f"{name}(" for name in syscalls.split(","))
        count = sum(
            1 for line in lines[:mark] if line.split(None, 1)[-1].startswith(wanted)
        )
        for path in db.parent.iterdir():
            path.unlink()
        return count

    @pytest.mark.parametrize(
        ("syscalls", "error", "repeat", "refused"),
        [
            ("fsync,fdatasync", "EIO", "", ["n3"]),
            ("fsync,fdatasync", "EIO", "+", ["n3", "n4"]),
            ("pwrite64", "ENOSPC", "+", ["n3", "n4"]),
        ],
        ids=["one-fsync-fails", "every-fsync-fails", "disk-full"],
    )
    def test_a_refused_message_is_never_stored_nor_delivered(
        self, tmp_path: Path, syscalls: str, error: str, repeat: str, refused: list[str]
    ) -> None:
        """send_email() raises StorageError, and after kill -9 and a restart exactly
        the messages it accepted are there and delivered."""
        assert STRACE is not None
        db = tmp_path / "outbox.db"
        first = self.calls_before_mark(db, syscalls) + 1
        proc = spawn(
            FAULTY_DISK,
            db,
            9,
            60,
            prefix=strace(
                os.devnull,
                f"trace={syscalls}",
                f"inject={syscalls}:error={error}:when={first}{repeat}",
            ),
        )
        out, err = proc.communicate(timeout=60)
        lines = [line.split() for line in out.splitlines()]
        assert [line[1] for line in lines if line[0] == "refused"] == [
            f"{n}@crash.test" for n in refused
        ], out + err
        stored = [line[1] for line in lines if line[0] == "stored"]
        assert len(stored) == 4 - len(refused)
        assert integrity(db) == "ok"

        with (
            SmtpServer() as server,
            Mailstrom(config_for(server.port), SqliteStorage(db)) as mailer,
        ):
            found = [s.message_id for s in mailer.list_messages()]
            assert found == stored
            for message_id in stored:
                assert mailer.wait(message_id, timeout=30).succeeded
            assert sorted(received_ids(server.handler)) == sorted(stored)

    def test_a_full_disk_is_found_at_construction(self, tmp_path: Path) -> None:
        """H5: with no room to write, SqliteStorage() itself raises StorageError."""
        assert STRACE is not None
        proc = spawn(
            FAULTY_DISK,
            tmp_path / "outbox.db",
            9,
            60,
            prefix=strace(
                os.devnull, "trace=pwrite64", "inject=pwrite64:error=ENOSPC:when=1+"
            ),
        )
        out, _ = proc.communicate(timeout=60)
        assert out.startswith("open-refused"), out
        assert "full" in out


class TestRestart:
    def test_a_possibly_delivered_recipient_stays_marked(self, tmp_path: Path) -> None:
        """A message whose dot went unanswered is retried after a restart and keeps
        possibly_delivered, so a duplicate can be explained."""
        db = tmp_path / "outbox.db"
        with ScriptedServer(silent_after_dot(timeout=10)) as silent:
            config = dataclasses.replace(
                config_for(silent.port), timeouts=Timeouts.uniform(0.5)
            )
            mailer = Mailstrom(config, SqliteStorage(db), clock=lambda: 1000.0)
            message_id = mailer.send_email(
                b"From: a@example.test\r\nTo: b@example.test\r\n\r\nx\r\n"
            )
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.possibly_delivered) == (DeliveryResult.DEFERRED, True)
            mailer.stop()
        with SmtpServer() as server:
            mailer = Mailstrom(config_for(server.port), SqliteStorage(db))
            assert mailer.run_once(1059.0) == 0
            assert mailer.run_once(1060.0) == 1
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.possibly_delivered) == (DeliveryResult.DELIVERED, True)
            assert r.attempts == 2
            mailer.stop()

    def test_backoff_carries_across_restarts_until_it_gives_up(
        self, tmp_path: Path
    ) -> None:
        """H9: a server that always says 4xx sees attempts spaced by the policy, each
        from a freshly opened mailer, until the recipient fails with 5.4.7."""
        db = tmp_path / "outbox.db"
        policy = {"initial_delay": 60, "max_delay": 600, "jitter": 0.1, "max_age": 3600}
        with SmtpServer() as server:
            first = Mailstrom(
                config_for(server.port, **policy), SqliteStorage(db), clock=lambda: 0.0
            )
            message_id = first.send_email(
                b"From: a@example.test\r\nTo: t4busy@example.test\r\n\r\nx\r\n"
            )
            first.stop()
            due, attempts_at = 0.0, list[float]()
            while True:
                mailer = Mailstrom(
                    config_for(server.port, **policy),
                    SqliteStorage(db),
                    rng=random.Random(len(attempts_at)),
                )
                assert mailer.run_once(due - 1) == 0  # never early
                assert mailer.run_once(due) == 1
                attempts_at.append(due)
                [r] = mailer.query_status(message_id).recipients
                mailer.stop()
                if r.completed:
                    break
                assert r.next_attempt_at is not None
                due = r.next_attempt_at
        assert (r.result, r.status_code) == (DeliveryResult.FAILED, "5.4.7")
        assert r.last_reply is not None and r.last_reply.code == 450
        assert r.attempts == len(attempts_at)
        gaps = [b - a for a, b in itertools.pairwise(attempts_at)]
        for n, gap in enumerate(gaps[:-1], start=1):
            base = min(60 * 2 ** (n - 1), 600)
            assert base * 0.9 <= gap <= base * 1.1, (n, gaps)
        assert attempts_at[-1] <= 3600  # the last one at max_age at the latest

    def test_clock_jumps_neither_stall_nor_storm(self, tmp_path: Path) -> None:
        """H12: with the wall clock set back a day, new mail and mail added elsewhere
        still go out at once and deferred mail waits; set forward a day, deferred mail
        gets one attempt, not a burst."""
        db = tmp_path / "outbox.db"
        offset = [0.0]

        def clock() -> float:
            return time.time() + offset[0]

        def added_elsewhere(subject: str) -> str:
            other = SqliteStorage(db)  # as another process would
            prepared = prepare_email(
                f"From: a@example.test\r\nTo: b@example.test\r\nSubject: {subject}"
                "\r\n\r\nx\r\n",
                helo_name="elsewhere.example.test",
            )
            other.add(prepared, clock())
            other.close()
            return prepared.message_id

        with SmtpServer() as server:
            mailer = Mailstrom(
                config_for(server.port, initial_delay=600),
                SqliteStorage(db),
                clock=clock,
            )
            mailer.start()
            busy = mailer.send_email(
                b"From: a@example.test\r\nTo: t4@example.test\r\n\r\nx\r\n"
            )
            deferred = mailer.wait(busy, timeout=20).recipients[0]
            assert deferred.result is DeliveryResult.DEFERRED

            offset[0] = -86400.0
            assert mailer.wait(
                mailer.send_email(
                    b"From: a@example.test\r\nTo: b@example.test\r\nSubject: back\r\n\r\nx\r\n"
                ),
                timeout=20,
            ).succeeded
            elsewhere = added_elsewhere("back")
            wait_until(lambda: mailer.query_status(elsewhere).succeeded)
            assert mailer.query_status(busy).recipients[0] == deferred

            offset[0] = 86400.0
            wait_until(lambda: mailer.query_status(busy).attempts == 2)
            elsewhere = added_elsewhere("forward")
            wait_until(lambda: mailer.query_status(elsewhere).succeeded)
            [r] = mailer.query_status(busy).recipients
            assert r.attempts == 2
            assert r.last_attempt_at is not None and r.next_attempt_at is not None
            # The backoff counts from the attempt's end, a moment after its claim.
            assert 1200 <= r.next_attempt_at - r.last_attempt_at < 1205
            mailer.stop()
