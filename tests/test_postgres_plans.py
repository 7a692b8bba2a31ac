"""PostgresStorage's worker statements stay lookups by key as the queue grows: a
session plans a statement once, often while the tables are small, and keeps
that plan. The operator's fail and recent, which change the messages they find
by key, keep those plans too."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from mailstrom_py import DeliveryResult, PostgresStorage, QueueFilter  # noqa: E402
from mailstrom_py.testing.emails import prepared_email  # noqa: E402

# Enough rows that reading a table whole costs far more than the rows a claim
# and a record touch.
QUEUE = 3000
ROUNDS = 20


def table_reads(dsn: str) -> int:
    """Rows read by whole-table scans of messages and recipients, and rows of
    recipients read through an index, so far, once every other session of the
    database has ended (a session reports its counts when it ends)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "sessions still open"
            time.sleep(0.05)
        row: Any = conn.execute(
            "SELECT sum(seq_tup_read + CASE relname WHEN 'recipients'"
            " THEN idx_tup_fetch ELSE 0 END) FROM pg_stat_user_tables"
            " WHERE schemaname = 'mailstrom' AND relname IN ('messages', 'recipients')"
        ).fetchone()
        return int(row[0])


def deliver_one(storage: PostgresStorage, now: float) -> None:
    """Claim the next due message, extend the claim and record its recipients
    delivered."""
    [claim] = storage.claim_due(now, 1, 60.0)
    assert storage.extend([claim], now, 60.0) == [True]
    delivered = [
        dataclasses.replace(r, result=DeliveryResult.DELIVERED, next_attempt_at=None)
        for r in claim.status.recipients
    ]
    [status] = storage.record_many([(claim, delivered)])
    assert status is not None and status.succeeded


def test_claims_and_records_planned_on_a_small_queue_read_no_table_whole(
    postgres_dsn: str,
) -> None:
    """Claims, extensions and records whose plans were made while the queue
    held a message at a time read no table of messages or recipients whole
    once it holds thousands: their cost does not grow with the queue."""
    storage = PostgresStorage(postgres_dsn, min_connections=1, max_connections=1)
    now = time.time()
    try:
        # Past psycopg's threshold for preparing a statement, on one session.
        for n in range(8):
            storage.add(prepared_email(n), now)
            deliver_one(storage, now)
        storage.add_many([prepared_email(n) for n in range(100, 100 + QUEUE)], now)
        for _ in range(ROUNDS):
            deliver_one(storage, now)
    finally:
        storage.close()
    read = table_reads(postgres_dsn)
    assert read < QUEUE, f"{read} rows read in {ROUNDS} rounds"


def test_admin_calls_on_the_same_session_leave_claims_and_records_their_plans(
    postgres_dsn: str,
) -> None:
    """Listings, counts and changes by filter, which plan with the planner's
    own choices, run on the session between claims and records, many times
    each: claims and records still read no table whole as the queue grows."""
    storage = PostgresStorage(postgres_dsn, min_connections=1, max_connections=1)
    now = time.time()
    selections = [
        QueueFilter(),
        QueueFilter(completed=False),
        QueueFilter(sender="sender@example.test"),
        QueueFilter(domain="example.test", held=False),
        QueueFilter(results=(DeliveryResult.QUEUED,)),
    ]
    try:
        for n in range(8):
            storage.add(prepared_email(n), now)
            for selected in selections:
                storage.find(selected, limit=5)
                storage.count(selected)
            storage.hold(QueueFilter(ids=("none@example.test",)))
            deliver_one(storage, now)
        storage.add_many([prepared_email(n) for n in range(100, 100 + QUEUE)], now)
        for _ in range(ROUNDS):
            deliver_one(storage, now)
    finally:
        storage.close()
    read = table_reads(postgres_dsn)
    assert read < QUEUE, f"{read} rows read in {ROUNDS} rounds"


def recipients_read_whole(dsn: str) -> int:
    """Rows of recipients read by whole-table scans so far (as
    :func:`table_reads`, once every other session ended)."""
    table_reads(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row: Any = conn.execute(
            "SELECT seq_tup_read FROM pg_stat_user_tables"
            " WHERE schemaname = 'mailstrom' AND relname = 'recipients'"
        ).fetchone()
        return int(row[0])


def test_fail_and_recent_read_the_recipients_they_need_by_key(
    postgres_dsn: str,
) -> None:
    """Failing a tenth of a large queue by sender, and reporting recent
    outcomes, read the recipients of the messages they touch through an
    index, not the whole table of recipients."""
    storage = PostgresStorage(postgres_dsn, min_connections=1, max_connections=1)
    now = time.time()
    try:
        storage.add_many(
            [
                dataclasses.replace(prepared_email(n), mail_from=f"app{n % 10}@x.test")
                for n in range(QUEUE)
            ],
            now,
        )
        for n in range(3):
            assert len(storage.fail(QueueFilter(sender=f"app{n}@x.test"), now)) == (
                QUEUE // 10
            )
            assert len(storage.recent(limit=QUEUE // 10)) == QUEUE // 10
    finally:
        storage.close()
    read = recipients_read_whole(postgres_dsn)
    assert read < QUEUE, f"{read} rows of recipients read whole"
