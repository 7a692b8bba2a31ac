"""SMTP TLS report counts (RFC 8460) kept in the queue's storage: one report
per report domain and day across every worker on a queue, and none of a
day's counts lost to a restart.

Direct delivery on loopback, as in ``test_tls_reports.py``: d.test's
exchanger at 127.0.0.2 offers STARTTLS, d.test publishes ``_smtp._tls`` with
a ``mailto:`` address at reports.test, whose exchanger is 127.0.0.4. Each
mailer is a worker of its own on one SQLite file or PostgreSQL database, as
separate processes would be; time is driven with ``run_once(now)``.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from support.mxnet import NOW, MxNet, message
from support.smtpd import SmtpServer
from support.tls import server_context

import mailstrom_py
from mailstrom_py import DeliveryResult, Mailstrom, SqliteStorage, Storage

DAY = 86_400.0
# NOW is 2023-11-14 22:13:20 UTC.
DAY1 = "2023-11-14"


@pytest.fixture
def reports(net: MxNet, ca: trustme.CA) -> SmtpServer:
    """d.test's exchanger, and the server d.test's reports reach."""
    net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
    net.mx("reports.test", (10, "mx.reports.test", "127.0.0.4"))
    net.zone.add(
        "_smtp._tls.d.test", "TXT", "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test"
    )
    net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
    return net.smtp("127.0.0.4")


def deliver(mailer: Mailstrom, to: str, now: float) -> None:
    message_id = mailer.send_email(message(to))
    mailer.run_once(now)
    [r] = mailer.query_status(message_id).recipients
    assert r.result is DeliveryResult.DELIVERED, r


def received_reports(server: SmtpServer) -> list[dict[str, Any]]:
    """The JSON of every TLS report ``server`` received for d.test's rua."""
    found = []
    for received in server.handler.messages:
        assert received.rcpt_tos == ("tlsrpt@reports.test",)
        parsed = email.message_from_bytes(received.data, policy=email.policy.default)
        assert parsed["TLS-Report-Domain"] == "d.test"
        [attachment] = [p for p in parsed.walk() if p.get_filename()]
        payload = attachment.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append(json.loads(gzip.decompress(payload)))
    return found


def successes(report: dict[str, Any]) -> int:
    [entry] = report["policies"]
    assert entry["policy"] == {
        "policy-type": "no-policy-found",
        "policy-domain": "d.test",
    }
    assert entry["summary"]["total-failure-session-count"] == 0
    return int(entry["summary"]["total-successful-session-count"])


def two_workers_one_report(
    net: MxNet, reports: SmtpServer, storage: Callable[[], Storage]
) -> None:
    """Workers A and B on one queue both deliver to d.test on day 1, A once
    more 30 seconds after its first (a count still in A's memory at the end
    of the day). On day 2, A's first attempt takes the day and queues the
    report; B's and A's later attempts queue none. Exactly one report goes
    to d.test's rua, for day 1, counting the sessions of both."""
    a = net.mailer(storage(), tls_reports=True)
    b = net.mailer(storage(), tls_reports=True)
    deliver(a, "a1@d.test", NOW)
    deliver(b, "b1@d.test", NOW + 1)
    deliver(a, "a2@d.test", NOW + 30)
    assert reports.handler.messages == []
    deliver(a, "a3@d.test", NOW + DAY)
    a.run_once(NOW + DAY)  # the report A queued
    deliver(b, "b2@d.test", NOW + DAY + 60)
    b.run_once(NOW + DAY + 60)
    deliver(a, "a4@d.test", NOW + DAY + 120)
    a.run_once(NOW + DAY + 120)
    [report] = received_reports(reports)
    assert report["date-range"] == {
        "start-datetime": f"{DAY1}T00:00:00Z",
        "end-datetime": f"{DAY1}T23:59:59Z",
    }
    assert report["report-id"] == "20231114-20231114.d.test@client.test"
    assert successes(report) == 3


class TestOneReportAcrossWorkers:
    def test_two_workers_on_one_sqlite_file_send_one_report_a_day(
        self, net: MxNet, reports: SmtpServer, tmp_path: Path
    ) -> None:
        """Two mailers on one SQLite file (as two worker processes): one
        report for d.test's day, counting both mailers' sessions."""
        two_workers_one_report(
            net, reports, lambda: SqliteStorage(tmp_path / "queue.db")
        )

    def test_two_workers_on_one_postgres_database_send_one_report_a_day(
        self, net: MxNet, reports: SmtpServer, postgres_dsn: str
    ) -> None:
        """Two mailers on one PostgreSQL database (as two workers on two
        hosts): one report for d.test's day, counting both mailers'
        sessions."""
        # Looked up when used: psycopg is optional.
        two_workers_one_report(
            net,
            reports,
            lambda: mailstrom_py.PostgresStorage(postgres_dsn, clock="caller"),
        )


class TestRestarts:
    def test_a_restart_keeps_the_days_counts(
        self, net: MxNet, reports: SmtpServer, tmp_path: Path
    ) -> None:
        """A mailer delivers to d.test twice on day 1 (the second count still
        in its memory) and stops; a new mailer on the same file, started on
        day 2, sends d.test the report of day 1 with both sessions."""
        path = tmp_path / "queue.db"
        first = net.mailer(SqliteStorage(path), tls_reports=True)
        deliver(first, "a@d.test", NOW)
        deliver(first, "b@d.test", NOW + 30)
        first.stop(10)
        second = net.mailer(SqliteStorage(path), tls_reports=True)
        deliver(second, "c@d.test", NOW + DAY)
        second.run_once(NOW + DAY)
        [report] = received_reports(reports)
        assert report["report-id"] == "20231114-20231114.d.test@client.test"
        assert successes(report) == 2


class TestTiming:
    def test_days_are_taken_once_the_new_day_is_two_flush_intervals_old(
        self, net: MxNet, reports: SmtpServer, tmp_path: Path
    ) -> None:
        """An attempt in the first two minutes of day 2 queues no report (other
        workers' last counts of day 1 may not be in yet); the first flush
        after them does."""
        midnight = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC
        mailer = net.mailer(SqliteStorage(tmp_path / "queue.db"), tls_reports=True)
        deliver(mailer, "a@d.test", NOW)
        deliver(mailer, "b@d.test", midnight + 60)
        mailer.run_once(midnight + 60)
        assert reports.handler.messages == []
        deliver(mailer, "c@d.test", midnight + 120)
        mailer.run_once(midnight + 120)
        [report] = received_reports(reports)
        assert successes(report) == 1

    def test_a_worker_writes_its_counts_at_most_once_a_minute(
        self, net: MxNet, reports: SmtpServer, tmp_path: Path
    ) -> None:
        """A session is counted in the worker's memory, and the counts reach
        the file with the worker's first attempt a minute or more after its
        last flush (the first attempt flushes at once), or when it stops."""
        path = tmp_path / "queue.db"
        mailer = net.mailer(SqliteStorage(path), tls_reports=True)

        def stored() -> int:
            with sqlite3.connect(path) as raw:
                [(total,)] = raw.execute(
                    "SELECT coalesce(sum(count), 0) FROM tls_session_counts"
                ).fetchall()
            raw.close()
            return int(total)

        deliver(mailer, "a@d.test", NOW)
        assert stored() == 1
        deliver(mailer, "b@d.test", NOW + 30)
        deliver(mailer, "c@d.test", NOW + 59)
        assert stored() == 1
        deliver(mailer, "d@d.test", NOW + 60)
        assert stored() == 4
        deliver(mailer, "e@d.test", NOW + 61)
        assert stored() == 4
        mailer.stop(10)
        assert stored() == 5

    def test_late_counts_of_a_taken_day_go_with_the_next_days_report(
        self, net: MxNet, reports: SmtpServer, tmp_path: Path
    ) -> None:
        """Worker B's last session of day 1 is still in its memory when A
        takes day 1; B flushes it later on day 2, when day 1 is closed. It
        goes with day 2's report, whose date range then starts at day 1 (a
        report-id of its own); no second report for day 1 goes out."""
        path = tmp_path / "queue.db"
        a = net.mailer(SqliteStorage(path), tls_reports=True)
        b = net.mailer(SqliteStorage(path), tls_reports=True)
        deliver(a, "a1@d.test", NOW)
        deliver(b, "b1@d.test", NOW + 1)
        deliver(b, "b2@d.test", NOW + 30)  # kept in B's memory
        deliver(a, "a2@d.test", NOW + DAY)
        a.run_once(NOW + DAY)
        deliver(b, "b3@d.test", NOW + DAY + 60)
        b.run_once(NOW + DAY + 60)
        deliver(a, "a3@d.test", NOW + 2 * DAY)
        a.run_once(NOW + 2 * DAY)
        first, second = received_reports(reports)
        assert first["report-id"] == "20231114-20231114.d.test@client.test"
        assert successes(first) == 2
        assert second["report-id"] == "20231114-20231115.d.test@client.test"
        assert second["date-range"] == {
            "start-datetime": f"{DAY1}T00:00:00Z",
            "end-datetime": "2023-11-15T23:59:59Z",
        }
        # b2 (late, of day 1) and a2, b3 of day 2.
        assert successes(second) == 3


class TestStorageTrouble:
    def test_counts_that_cannot_be_flushed_or_taken_wait_for_the_next_flush(
        self,
        net: MxNet,
        reports: SmtpServer,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """While the counts' table is gone from the file (renamed by another
        process), flushes and takes fail with a WARNING, and delivery goes
        on; once it is back, the next flush adds the counts kept and takes
        the day: one report, counting every session of day 1."""
        path = tmp_path / "queue.db"
        mailer = net.mailer(SqliteStorage(path), tls_reports=True)

        def rename(old: str, new: str) -> None:
            with sqlite3.connect(path) as other:
                other.execute(f"ALTER TABLE {old} RENAME TO {new}")
            other.close()

        deliver(mailer, "a@d.test", NOW)
        rename("tls_session_counts", "elsewhere")
        deliver(mailer, "b@d.test", NOW + 60)
        deliver(mailer, "c@d.test", NOW + DAY)
        mailer.run_once(NOW + DAY)
        assert reports.handler.messages == []
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("kept for the next flush" in w for w in warnings), warnings
        assert any("not taken" in w for w in warnings), warnings
        rename("elsewhere", "tls_session_counts")
        deliver(mailer, "d@d.test", NOW + DAY + 60)
        mailer.run_once(NOW + DAY + 60)
        [report] = received_reports(reports)
        assert successes(report) == 2
