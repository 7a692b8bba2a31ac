"""SqliteStorage beyond the shared contract: the file, its schema, errors, threads
and processes. Every test uses a real SQLite file.

Crash and fault-injection tests are in ``test_durability.py``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.smtpd import SmtpServer
from support.walfile import commits_in_wal

from mailstrom_py import (
    Config,
    ConfigError,
    DeliveryResult,
    Mailstrom,
    MessageNotFound,
    PreparedEmail,
    QueueFilter,
    RelayConfig,
    Remote,
    RetryPolicy,
    SmtpReply,
    SmtpStep,
    SqliteStorage,
    StorageError,
    Timeouts,
)
from mailstrom_py.storage.sqlite import claims, schema
from mailstrom_py.testing import prepared_email

ROOT = Path(__file__).resolve().parent.parent
CHATTR = shutil.which("chattr")

#: The columns version 4 added to recipients (the session's TLS policy),
#: and the policy's strings, which version 9 added.
TLS_POLICY_COLUMNS = (
    "remote_tls_policy",
    "remote_tls_policy_domain",
    "remote_tls_result",
    "remote_tls_failure",
    "remote_tls_policy_strings",
)


def email(n: int, recipients: tuple[str, ...] = ("a@example.test",)) -> PreparedEmail:
    return prepared_email(n, *recipients)


def message(subject: str, to: str = "a@example.test") -> bytes:
    return (
        f"From: sender@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()


def config_for(server: SmtpServer) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=3600, jitter=0.0),
        timeouts=Timeouts.uniform(10),
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    """Poll `predicate` (for state in another process) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        threading.Event().wait(0.05)


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter that imports this checkout's package."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make a file or directory unwritable for this process, even for root.

    Permission bits do not bind root, so as root the immutable attribute is
    used instead (the test is skipped where the file system refuses it).
    """
    changed: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o555 if path.is_dir() else 0o444)
        else:
            if CHATTR is None:
                pytest.skip(
                    "running as root without chattr: cannot make files read-only"
                )
            done = subprocess.run(
                [CHATTR, "+i", str(path)], capture_output=True, check=False
            )
            if done.returncode != 0:
                pytest.skip(f"root cannot make {path} read-only here: {done.stderr!r}")
        changed.append(path)

    yield make
    for path in changed:
        if os.geteuid() == 0:
            assert CHATTR is not None
            subprocess.run([CHATTR, "-i", str(path)], check=True)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)


class TestFile:
    def test_a_reopened_file_has_everything(self, db: Path) -> None:
        """Messages, statuses, holds, claims and reports survive closing and
        reopening."""
        storage = SqliteStorage(db)
        storage.add(email(1, ("a@example.test", "b@example.test")), now=5.0)
        [claim] = storage.claim_due(now=6.0, limit=1, lease=60.0)
        storage.record(
            claim,
            [
                dataclasses.replace(
                    claim.status.recipients[0],
                    result=DeliveryResult.DELIVERED,
                    next_attempt_at=None,
                    possibly_delivered=True,
                )
            ],
        )
        storage.add(email(2), now=7.0)
        storage.hold(QueueFilter(ids=("m2@example.test",)))
        storage.add(email(3), now=8.0)
        [open_claim] = storage.claim_due(now=8.0, limit=1, lease=60.0)
        before = storage.find(QueueFilter())
        storage.close()

        again = SqliteStorage(db)
        assert again.find(QueueFilter()) == before
        assert again.email("m1@example.test") == email(
            1, ("a@example.test", "b@example.test")
        )
        assert again.next_due() == 66.0
        assert again.record(open_claim, []) == open_claim.status
        again.close()

    def test_a_new_file_is_private(self, db: Path) -> None:
        """The database and its WAL and shared-memory files are created 0600."""
        storage = SqliteStorage(db)
        storage.add(email(1), now=0.0)
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        storage.close()

    def test_an_existing_file_keeps_its_mode(self, db: Path) -> None:
        """Opening an existing database does not change its permissions."""
        SqliteStorage(db).close()
        db.chmod(0o640)
        SqliteStorage(db).close()
        assert stat.S_IMODE(db.stat().st_mode) == 0o640

    def test_the_file_is_marked_and_versioned(self, db: Path) -> None:
        """application_id marks the file; user_version holds the schema version."""
        SqliteStorage(db).close()
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA application_id").fetchone() == (
                schema.APPLICATION_ID,
            )
            assert raw.execute("PRAGMA user_version").fetchone() == (
                schema.SCHEMA_VERSION,
            )
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        raw.close()

    def test_an_older_schema_is_migrated_forward(
        self, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Opening a file of an older schema runs the later migrations, keeping data."""
        storage = SqliteStorage(db)
        storage.add(email(1), now=1.0)
        storage.close()
        later = (*schema.MIGRATIONS, "CREATE TABLE later (x INTEGER)")
        monkeypatch.setattr(schema, "MIGRATIONS", later)
        monkeypatch.setattr(schema, "SCHEMA_VERSION", len(later))
        storage = SqliteStorage(db)
        assert storage.status("m1@example.test").created_at == 1.0
        storage.close()
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA user_version").fetchone() == (len(later),)
            assert raw.execute("SELECT count(*) FROM later").fetchone() == (0,)
        raw.close()

    def test_a_version_1_file_opens_and_keeps_its_data(self, db: Path) -> None:
        """A file written before replies kept their steps (schema version 1) is
        migrated: its statuses and messages read back as they were, the replies
        with no step, and new outcomes keep theirs."""
        raw = sqlite3.connect(db)
        with raw:
            raw.executescript(schema.MIGRATIONS[0])
            raw.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
            raw.execute("PRAGMA user_version = 1")
            raw.execute(
                "INSERT INTO messages VALUES"
                " (1, 'm1@example.test', 's@example.test', 0, 0, 0, 0, 5.0,"
                " 0, 1, 70.0, 0)"
            )
            raw.execute(
                "INSERT INTO bodies VALUES (1, ?)", (b"Subject: x\r\n\r\nhi\r\n",)
            )
            insert = (
                "INSERT INTO recipients (message, position, address, domain, result,"
                " attempts, reply_code, reply_enhanced, reply_text, status_code,"
                " next_attempt_at, possibly_delivered, remote_host, remote_address,"
                " remote_port) VALUES (1, :n, :address, 'example.test', :result, 1,"
                " :code, :enhanced, :text, :enhanced, :due, 0, 'mx.test',"
                " '127.0.0.1', 25)"
            )
            a = {"n": 0, "address": "a@example.test", "result": "delivered"}
            b = {"n": 1, "address": "b@example.test", "result": "deferred"}
            raw.execute(
                insert,
                {**a, "code": 250, "enhanced": "2.0.0", "text": "ok", "due": None},
            )
            raw.execute(
                insert,
                {**b, "code": 451, "enhanced": "4.3.0", "text": "later", "due": 70.0},
            )
        raw.close()
        storage = SqliteStorage(db)
        first, second = storage.status("m1@example.test").recipients
        assert (first.result, first.last_reply, first.rcpt_reply) == (
            DeliveryResult.DELIVERED,
            SmtpReply(250, "2.0.0", "ok"),
            None,
        )
        assert (second.result, second.last_reply, second.next_attempt_at) == (
            DeliveryResult.DEFERRED,
            SmtpReply(451, "4.3.0", "later"),
            70.0,
        )
        assert second.remote is not None and second.remote.host == "mx.test"
        assert storage.email("m1@example.test").data == b"Subject: x\r\n\r\nhi\r\n"
        retried = dataclasses.replace(
            second,
            result=DeliveryResult.DELIVERED,
            next_attempt_at=None,
            last_reply=SmtpReply(250, "2.0.0", "ok", SmtpStep.END_OF_DATA),
            rcpt_reply=SmtpReply(250, "2.1.5", "ok", SmtpStep.RCPT),
        )
        [claim] = storage.claim_due(70.0, 1, 60.0)
        assert storage.record(claim, [retried]) is not None
        storage.close()
        storage = SqliteStorage(db)
        assert storage.status("m1@example.test").recipients == (first, retried)
        storage.close()
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA user_version").fetchone() == (
                schema.SCHEMA_VERSION,
            )

    def test_a_file_from_before_claims_keeps_its_queue_and_gains_claims(
        self, db: Path
    ) -> None:
        """A file of schema version 2 (before claims) opens at the current
        version with every message as it was; its due mail is claimed and
        recorded as any other."""
        old = SqliteStorage(db)
        old.add_many([email(1), email(2), email(3)], now=10.0)
        old.hold(QueueFilter(ids=("m3@example.test",)))
        old.close()
        with sqlite3.connect(db) as raw:
            # Back to version 2: without the columns of the versions after it.
            raw.execute("DROP TABLE tls_session_counts")
            raw.execute("DROP TABLE tls_report_takes")
            raw.execute("DROP TABLE mta_sts_policies")
            raw.execute("DROP INDEX messages_sender")
            raw.execute("DROP TABLE events")
            raw.execute("DROP TABLE suppressions")
            raw.execute("DROP TABLE suspensions")
            raw.execute("ALTER TABLE messages DROP COLUMN claim_token")
            raw.execute("ALTER TABLE messages DROP COLUMN first_due_at")
            for column in TLS_POLICY_COLUMNS:
                raw.execute(f"ALTER TABLE recipients DROP COLUMN {column}")
            raw.execute("PRAGMA user_version = 2")
            # m2 as version 2 left an attempt begun at 20: due again at 80.
            raw.execute(
                "UPDATE recipients SET attempts = 1, last_attempt_at = 20,"
                " next_attempt_at = 80 WHERE message = 2"
            )
            raw.execute("UPDATE messages SET due_at = 80 WHERE id = 2")
            assert raw.execute("PRAGMA user_version").fetchone() == (2,)
        raw.close()

        storage = SqliteStorage(db)
        assert [
            (s.attempts, s.next_attempt_at, s.held) for s in storage.find(QueueFilter())
        ] == [(0, 10.0, False), (1, 80.0, False), (0, 10.0, True)]
        # Stored before first due times were kept: retries count from creation.
        assert [
            (s.first_due_at, s.retry_since) for s in storage.find(QueueFilter())
        ] == [(None, 10.0)] * 3
        assert storage.next_due() == 10.0
        [first] = storage.claim_due(now=79.0, limit=5, lease=60.0)
        assert first.message_id == "m1@example.test"
        [second] = storage.claim_due(now=80.0, limit=5, lease=60.0)
        assert second.status.attempts == 2
        done = dataclasses.replace(
            second.status.recipients[0], result=DeliveryResult.DELIVERED
        )
        assert storage.record(second, [done]) is not None
        storage.close()
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA user_version").fetchone() == (
                schema.SCHEMA_VERSION,
            )
        raw.close()

    def test_a_file_from_before_tls_policies_reads_them_as_unknown(
        self, db: Path
    ) -> None:
        """A file of schema version 3 whose recipient has a server recorded
        opens at the current version: the server reads back with no TLS
        policy known, and a new record keeps one."""
        storage = SqliteStorage(db)
        storage.add(email(1), now=10.0)
        [claim] = storage.claim_due(now=10.0, limit=1, lease=60.0)
        remote = Remote("mx.test", "192.0.2.1", 25, "TLSv1.3", False)
        deferred = dataclasses.replace(
            claim.status.recipients[0],
            result=DeliveryResult.DEFERRED,
            next_attempt_at=20.0,
            remote=remote,
        )
        assert storage.record(claim, [deferred]) is not None
        storage.close()
        with sqlite3.connect(db) as raw:
            raw.execute("DROP TABLE tls_session_counts")
            raw.execute("DROP TABLE tls_report_takes")
            raw.execute("DROP TABLE mta_sts_policies")
            raw.execute("DROP INDEX messages_sender")
            raw.execute("DROP TABLE events")
            raw.execute("DROP TABLE suppressions")
            raw.execute("DROP TABLE suspensions")
            raw.execute("ALTER TABLE messages DROP COLUMN first_due_at")
            for column in TLS_POLICY_COLUMNS:
                raw.execute(f"ALTER TABLE recipients DROP COLUMN {column}")
            raw.execute("PRAGMA user_version = 3")
        raw.close()
        storage = SqliteStorage(db)
        [status] = storage.find(QueueFilter())
        assert status.recipients[0].remote == remote
        [claim] = storage.claim_due(now=20.0, limit=1, lease=60.0)
        held = dataclasses.replace(
            remote, tls_policy="sts", tls_policy_domain="example.test"
        )
        again = dataclasses.replace(claim.status.recipients[0], remote=held)
        after = storage.record(claim, [again])
        assert after is not None and after.recipients[0].remote == held
        storage.close()

    def test_a_newer_schema_is_refused(self, db: Path) -> None:
        """A file written by a newer mailstrom_py raises a clear StorageError."""
        SqliteStorage(db).close()
        with sqlite3.connect(db) as raw:
            raw.execute("PRAGMA user_version = 99")
        raw.close()
        with pytest.raises(StorageError, match="schema version 99, newer"):
            SqliteStorage(db)

    def test_another_applications_database_is_refused(self, db: Path) -> None:
        """An SQLite file with other tables is not taken over."""
        with sqlite3.connect(db) as raw:
            raw.execute("CREATE TABLE accounts (id INTEGER)")
        raw.close()
        with pytest.raises(StorageError, match="not a mailstrom_py database"):
            SqliteStorage(db)

    def test_a_file_that_is_not_sqlite_is_refused(self, db: Path) -> None:
        """Garbage raises StorageError, chained to SQLite's own error."""
        db.write_bytes(b"not a database at all\n" * 100)
        with pytest.raises(StorageError) as info:
            SqliteStorage(db)
        assert isinstance(info.value.__cause__, sqlite3.DatabaseError)

    def test_create_false_refuses_a_missing_file(self, db: Path) -> None:
        """With create=False a missing database raises instead of appearing."""
        with pytest.raises(StorageError, match="no database"):
            SqliteStorage(db, create=False)
        assert not db.exists()

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"synchronous": "OFF"}, "synchronous"),
            ({"attempt_synchronous": "EXTRA"}, "attempt_synchronous"),
            ({"busy_timeout": 0}, "busy_timeout"),
            ({"busy_timeout": float("inf")}, "busy_timeout"),
            ({"busy_timeout": float("nan")}, "busy_timeout"),
        ],
    )
    def test_bad_settings_raise_config_error(
        self, db: Path, kwargs: dict[str, object], field: str
    ) -> None:
        """Only FULL or NORMAL, and a finite positive busy timeout, are accepted."""
        with pytest.raises(ConfigError, match=field):
            SqliteStorage(db, **kwargs)  # type: ignore[arg-type]

    @pytest.mark.parametrize("path", ["", ":memory:", "file:outbox.db?mode=memory"])
    def test_a_path_must_name_a_file(self, path: str) -> None:
        """In-memory databases are refused: MemoryStorage is for that."""
        with pytest.raises(ConfigError):
            SqliteStorage(path)


class TestUnwritable:
    """H7: every way of being unable to write shows at construction."""

    def test_a_missing_directory(self, tmp_path: Path) -> None:
        """A path in a directory that does not exist raises StorageError."""
        with pytest.raises(StorageError) as info:
            SqliteStorage(tmp_path / "no" / "such" / "outbox.db")
        assert isinstance(info.value.__cause__, OSError)

    def test_a_read_only_file(
        self, db: Path, read_only: Callable[[Path], None]
    ) -> None:
        """An existing database the process may not write raises at construction."""
        SqliteStorage(db).close()
        read_only(db)
        with pytest.raises(StorageError) as info:
            SqliteStorage(db)
        assert isinstance(info.value.__cause__, sqlite3.Error)

    def test_a_read_only_directory(
        self, tmp_path: Path, read_only: Callable[[Path], None]
    ) -> None:
        """A new database in a directory the process may not write raises."""
        read_only(tmp_path)
        with pytest.raises(StorageError) as info:
            SqliteStorage(tmp_path / "outbox.db")
        assert isinstance(info.value.__cause__, OSError)

    def test_a_database_in_a_read_only_directory(
        self, db: Path, read_only: Callable[[Path], None]
    ) -> None:
        """WAL needs files beside the database: a read-only directory is refused."""
        SqliteStorage(db).close()
        read_only(db.parent)
        with pytest.raises(StorageError) as info:
            SqliteStorage(db)
        assert isinstance(info.value.__cause__, sqlite3.Error)


class TestQueries:
    @pytest.mark.parametrize(
        ("query", "params"),
        [(claims.CLAIMABLE, (0.0, 10)), (claims.NEXT_DUE, ())],
        ids=["claimable", "next-due"],
    )
    def test_the_claim_and_next_due_queries_are_served_by_their_index(
        self, db: Path, query: str, params: tuple[object, ...]
    ) -> None:
        """What may be claimed, and when next, is read off the messages_due
        index: no table scan, no sort."""
        SqliteStorage(db).close()
        with sqlite3.connect(db) as raw:
            plan = " | ".join(
                row[-1] for row in raw.execute("EXPLAIN QUERY PLAN " + query, params)
            )
        raw.close()
        assert "INDEX messages_due" in plan, plan
        assert "SCAN messages" not in plan and "TEMP B-TREE" not in plan, plan

    def test_asking_when_next_changes_nothing(self, db: Path) -> None:
        """next_due(), however often, leaves every status as it was."""
        storage = SqliteStorage(db)
        for n in range(5):
            storage.add(email(n), now=float(n))
        storage.claim_due(now=10.0, limit=1, lease=500.0)
        before = storage.find(QueueFilter())
        for _ in range(3):
            assert storage.next_due() == 1.0
        assert storage.find(QueueFilter()) == before
        storage.close()


class TestBatches:
    def test_a_batch_is_one_transaction(self, db: Path) -> None:
        """claim_due() and record_many() commit once for a whole batch, where
        record() commits once per message."""
        storage = SqliteStorage(db)
        storage.add_many([email(n) for n in range(32)], now=0.0)
        start = commits_in_wal(db)

        found = storage.claim_due(now=1.0, limit=32, lease=60.0)
        assert len(found) == 32
        assert commits_in_wal(db) == start + 1

        delivered = [
            (c, [dataclasses.replace(r, result=DeliveryResult.DELIVERED)])
            for c in found
            for r in c.status.recipients
        ]
        storage.record_many(delivered[:16])
        assert commits_in_wal(db) == start + 2
        for claim, updates in delivered[16:]:
            storage.record(claim, updates)
        assert commits_in_wal(db) == start + 18
        assert storage.count(QueueFilter(completed=True)) == 32
        storage.close()

    def test_a_batch_claims_each_message_whole(self, db: Path) -> None:
        """A claim of several messages with several recipients each brings every
        message with its own body and envelope, its recipients in order, earliest
        due first; the outcomes of a batch load and record each message whole."""
        storage = SqliteStorage(db)
        sent = {
            n: email(n, tuple(f"r{k}@{n}.example.test" for k in range(n % 3 + 1)))
            for n in range(6)
        }
        for n, at in [(0, 5.0), (1, 1.0), (2, 3.0), (3, 1.0), (4, 9.0), (5, 2.0)]:
            storage.add(sent[n], now=at)
        before = {s.message_id: s for s in storage.find(QueueFilter())}
        found = storage.claim_due(now=10.0, limit=6, lease=60.0)
        assert [c.email for c in found] == [sent[n] for n in (1, 3, 5, 2, 0, 4)]
        assert [c.before for c in found] == [before[c.message_id] for c in found]
        for claim in found:
            assert [r.address for r in claim.status.recipients] == list(
                claim.email.recipients
            )
        delivered = [
            (c, [dataclasses.replace(r, result=DeliveryResult.DELIVERED)])
            for c in found
            for r in c.status.recipients[:1]
        ]
        after = storage.record_many(delivered)
        assert [s.message_id if s else None for s in after] == [
            c.message_id for c, _ in delivered
        ]
        for claim in found:
            status = storage.status(claim.message_id)
            assert status.recipients[0].result is DeliveryResult.DELIVERED
            assert len(status.pending) == len(claim.email.recipients) - 1
        storage.close()

    def test_a_failed_claim_claims_nothing(
        self, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A claim that fails part way (here, making its tokens) leaves every
        message as it was: the claim is one transaction."""
        storage = SqliteStorage(db)
        storage.add_many([email(n) for n in range(3)], now=0.0)
        before = storage.find(QueueFilter())

        def no_token() -> str:
            raise RuntimeError("no token")

        monkeypatch.setattr(claims, "new_token", no_token)
        with pytest.raises(RuntimeError, match="no token"):
            storage.claim_due(now=1.0, limit=3, lease=60.0)
        assert storage.find(QueueFilter()) == before
        monkeypatch.undo()
        assert len(storage.claim_due(now=1.0, limit=3, lease=60.0)) == 3
        storage.close()


class TestErrors:
    def test_a_locked_database_fails_the_send_and_stores_nothing(
        self, db: Path
    ) -> None:
        """H6: another writer past the busy timeout raises StorageError; no partial row."""
        storage = SqliteStorage(db, busy_timeout=0.3)
        config = Config(
            helo_name="client.example.test",
            delivery=RelayConfig(host="127.0.0.1", port=9, tls="none"),
        )
        mailer = Mailstrom(config, storage)
        kept = mailer.send_email(message("before"))
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            mailer.send_email(message("blocked"))
        assert time.monotonic() - started >= 0.3
        cause = info.value.__cause__
        assert isinstance(cause, sqlite3.OperationalError)
        assert "locked" in str(cause)
        assert mailer.query_status(kept).message_id == kept  # reads go on
        blocker.execute("ROLLBACK")
        blocker.close()
        with sqlite3.connect(db) as raw:
            counts = [
                raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                for table in ("messages", "bodies", "recipients")
            ]
        raw.close()
        assert counts == [1, 1, 1]
        mailer.send_email(message("after"))
        assert mailer.count_messages() == 2
        mailer.stop()

    def test_a_closed_storage_raises(self, db: Path) -> None:
        """Every call after close() raises StorageError; close() may repeat."""
        storage = SqliteStorage(db)
        storage.add(email(1), now=0.0)
        storage.close()
        storage.close()
        with pytest.raises(StorageError, match="closed"):
            storage.add(email(2), now=0.0)
        with pytest.raises(StorageError, match="closed"):
            storage.status("m1@example.test")

    def test_unknown_ids_are_lookup_errors_not_storage_failures(self, db: Path) -> None:
        """MessageNotFound is raised as such, not wrapped."""
        storage = SqliteStorage(db)
        with pytest.raises(MessageNotFound):
            storage.email("nope@example.test")
        storage.close()


class TestThreads:
    def test_writers_and_readers_in_many_threads(self, db: Path) -> None:
        """16 threads add and claim while 4 read: nothing lost, no lock errors."""
        storage = SqliteStorage(db)
        errors: list[BaseException] = []
        done = threading.Event()

        def write(k: int) -> None:
            try:
                for n in range(k * 10, k * 10 + 10):
                    storage.add(email(n), now=float(n))
                    storage.claim_due(1e9, 1, 1e9)
            except BaseException as exc:
                errors.append(exc)

        def read() -> None:
            try:
                while not done.is_set():
                    for status in storage.find(QueueFilter(), limit=50):
                        assert len(status.recipients) == 1
                    storage.next_due()
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(4)]
        writers = [threading.Thread(target=write, args=(k,)) for k in range(16)]
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join()
        done.set()
        for t in readers:
            t.join()
        assert errors == []
        assert storage.count(QueueFilter()) == 160
        assert all(s.attempts == 1 for s in storage.find(QueueFilter()))
        storage.close()

    def test_two_instances_on_one_file_write_at_once(self, db: Path) -> None:
        """Two storages (as two processes would) writing together never see a lock."""
        first, second = SqliteStorage(db), SqliteStorage(db)
        errors: list[BaseException] = []

        def write(storage: SqliteStorage, base: int) -> None:
            try:
                for n in range(base, base + 25):
                    storage.add(email(n), now=float(n))
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=write, args=(s, k * 25))
            for k, s in enumerate([first, second] * 3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert first.count(QueueFilter()) == second.count(QueueFilter()) == 150
        first.close()
        second.close()

    def test_two_instances_on_one_file_never_claim_one_message_twice(
        self, db: Path
    ) -> None:
        """Claims made at once through two storages on one file (as two processes
        would) take every message exactly once."""
        first, second = SqliteStorage(db), SqliteStorage(db)
        first.add_many([email(n) for n in range(200)], now=0.0)
        taken: list[list[str]] = [[], [], [], []]
        barrier = threading.Barrier(4)

        def claim(storage: SqliteStorage, mine: list[str]) -> None:
            barrier.wait()
            while found := storage.claim_due(now=1.0, limit=7, lease=60.0):
                mine.extend(c.message_id for c in found)

        threads = [
            threading.Thread(target=claim, args=(s, taken[k]))
            for k, s in enumerate([first, second] * 2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        every = [i for mine in taken for i in mine]
        assert sorted(every) == sorted(f"m{n}@example.test" for n in range(200))
        first.close()
        second.close()


ADD_IN_CHILD = """
import sys
from mailstrom_py import Config, Mailstrom, RelayConfig, SqliteStorage
config = Config(helo_name="other.example.test",
                delivery=RelayConfig(host="127.0.0.1", port=9, tls="none"))
mailer = Mailstrom(config, SqliteStorage(sys.argv[1]))
for n in range(int(sys.argv[2])):
    print(mailer.send_email(
        f"From: a@example.test\\r\\nTo: z{n}@example.test\\r\\n\\r\\nx\\r\\n"))
mailer.stop()
"""


class TestProcesses:
    def test_a_running_worker_picks_up_mail_from_another_process(
        self, db: Path
    ) -> None:
        """Mail added by another process goes out promptly; deferred mail keeps its backoff."""
        with SmtpServer() as server:
            mailer = Mailstrom(config_for(server), SqliteStorage(db))
            waiting = mailer.send_email(message("busy", to="t4busy@example.test"))
            mailer.start()
            deferred = mailer.wait(waiting, timeout=20).recipients[0]
            assert deferred.result is DeliveryResult.DEFERRED

            added = run_python(ADD_IN_CHILD, str(db), "3")
            assert added.returncode == 0, added.stderr
            other_ids = added.stdout.split()
            for message_id in other_ids:
                assert mailer.wait(message_id, timeout=20).succeeded
            # The worker paged the other process's mail in without touching the
            # deferred message: same attempt count, same next attempt.
            assert mailer.query_status(waiting).recipients[0] == deferred
            assert deferred.next_attempt_at is not None
            assert deferred.next_attempt_at > time.time() + 3000

            kicked = run_python(
                "from mailstrom_py.cli import main; import sys;"
                " sys.exit(main(sys.argv[1:]))",
                *("queue", "kick", "--db", str(db), waiting),
            )
            assert kicked.returncode == 0, kicked.stderr
            assert kicked.stdout.split() == [waiting]
            server.handler.wait_until(
                lambda: server.handler.commands.count("RCPT") == 5, timeout=20
            )
            wait_until(lambda: mailer.query_status(waiting).attempts == 2)
            mailer.stop()
