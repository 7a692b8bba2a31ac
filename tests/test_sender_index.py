"""The queue filter by envelope sender (``QueueFilter.sender``) is served by an
index on both SQL backends, as EXPLAIN shows, not by reading every message."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import time
from pathlib import Path

import pytest

from mailstrom_py import DeliveryResult, QueueFilter, SqliteStorage
from mailstrom_py.storage.sql import filter_condition
from mailstrom_py.testing.emails import prepared_email

SENDERS = 50
QUEUE = 2000


def senders_email(n: int) -> object:
    """Message ``n``, from one of ``SENDERS`` senders."""
    return dataclasses.replace(prepared_email(n), mail_from=f"app{n % SENDERS}@x.test")


class TestSqlite:
    @pytest.mark.parametrize(
        "shape",
        [
            "SELECT count(*) FROM messages m WHERE {clause}",
            "SELECT * FROM messages m WHERE {clause}"
            " ORDER BY m.created_at, m.id LIMIT 100",
        ],
        ids=["count", "find"],
    )
    def test_the_sender_filter_reads_the_sender_index(
        self, tmp_path: Path, shape: str
    ) -> None:
        """A count and a listing by sender (the condition SqliteStorage builds)
        search messages_sender, with no scan of messages and no sort."""
        db = tmp_path / "outbox.db"
        storage = SqliteStorage(db)
        storage.add_many([senders_email(n) for n in range(QUEUE)], time.time())  # type: ignore[misc]
        assert storage.count(QueueFilter(sender="APP7@x.test")) == QUEUE // SENDERS
        storage.close()
        clause, params = filter_condition(QueueFilter(sender="APP7@x.test"))
        with sqlite3.connect(db) as raw:
            raw.execute("ANALYZE")
            plan = " | ".join(
                row[-1]
                for row in raw.execute(
                    "EXPLAIN QUERY PLAN " + shape.format(clause=clause), params
                )
            )
        raw.close()
        assert re.search(r"SEARCH m USING (COVERING )?INDEX messages_sender", plan), (
            plan
        )
        assert "SCAN m" not in plan and "TEMP B-TREE" not in plan, plan


psycopg = pytest.importorskip("psycopg")

from support.postgres import PgServer  # noqa: E402

from mailstrom_py import PostgresStorage  # noqa: E402


def logged_plans(server: PgServer, since: int) -> list[str]:
    """The plans auto_explain wrote to the server's log after offset ``since``,
    each with its query text."""
    text = server.log_file.read_bytes()[since:].decode("utf-8", "replace")
    return re.split(r"\n(?=\S.*duration: [0-9.]+ ms  plan:)", "\n" + text)[1:]


def test_postgres_lists_and_counts_by_sender_through_its_index(
    postgres_server: PgServer, postgres_database: str, postgres_dsn: str
) -> None:
    """Every list and count by sender that PostgresStorage runs, the first
    and the repeated ones (prepared, past psycopg's threshold), is planned on
    messages_sender, over a queue of thousands from many senders, while claims
    and records keep their own plans."""
    with postgres_server.admin() as admin:
        for setting, value in (
            ("session_preload_libraries", "auto_explain"),
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_level", "warning"),
        ):
            admin.execute(
                f"ALTER DATABASE {postgres_database} SET {setting} = '{value}'"
            )
    storage = PostgresStorage(postgres_dsn, min_connections=1, max_connections=1)
    try:
        now = time.time()
        storage.add_many([senders_email(n) for n in range(QUEUE)], now)  # type: ignore[misc]
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("ANALYZE mailstrom.messages")
        since = postgres_server.log_file.stat().st_size
        for _ in range(8):
            selected = QueueFilter(sender="APP7@x.test")
            assert len(storage.find(selected, limit=10)) == 10
            assert storage.count(selected) == QUEUE // SENDERS
            [claim] = storage.claim_due(now, 1, 60.0)
            done = [
                dataclasses.replace(r, result=DeliveryResult.DELIVERED)
                for r in claim.status.recipients
            ]
            storage.record_many([(claim, done)])
    finally:
        storage.close()
    by_sender = [
        p for p in logged_plans(postgres_server, since) if "translate(m.mail_from" in p
    ]
    assert len(by_sender) == 16, by_sender
    for plan in by_sender:
        assert "messages_sender" in plan, plan
        assert "Seq Scan on messages" not in plan, plan
