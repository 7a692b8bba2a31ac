"""The queue commands as a sysadmin runs them: ``queue list`` like mailq,
``queue show`` like postcat -q, JSON output, and the queue of a configuration
file, each through the real command line in a child process."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from pathlib import Path

import pytest
from support.cli import config_text, run

from mailstrom_py import (
    DeliveryResult,
    QueueFilter,
    Remote,
    SmtpReply,
    SqliteStorage,
    Storage,
)
from mailstrom_py.testing import prepared_email

UNKNOWN = "nope@example.test"
REMOTE = Remote(
    "mx.example.test",
    "127.0.0.1",
    25,
    tls_version="TLSv1.3",
    tls_verified=True,
    tls_policy="sts",
    tls_policy_domain="example.test",
    tls_result="success",
    tls_policy_strings=("version: STSv1", "mode: enforce", "mx: mx.example.test"),
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration file whose queue holds three messages: m1, two hours
    old and deferred with a 450 reply from an exchanger under MTA-STS; m2 for
    two recipients; m3 held."""
    db = tmp_path / "outbox.db"
    storage = SqliteStorage(db)
    now = time.time()
    storage.add(prepared_email(1, "a@example.test"), now - 7200)
    [claim] = storage.claim_due(now - 7200, limit=1, lease=60.0)
    storage.record(
        claim,
        [
            dataclasses.replace(
                claim.status.recipients[0],
                next_attempt_at=now + 600,
                result=DeliveryResult.DEFERRED,
                last_reply=SmtpReply(450, "4.2.0", "mailbox busy"),
                status_code="4.2.0",
                detail="mailbox busy",
                remote=REMOTE,
            )
        ],
    )
    storage.add(prepared_email(2, "b@other.test", "c@example.test"), now)
    storage.add(prepared_email(3, "d@example.test"), now)
    storage.hold(QueueFilter(ids=("m3@example.test",)))
    storage.close()
    path = tmp_path / "mailstrom.toml"
    path.write_text(config_text(port=25, db=db), encoding="utf-8")
    return path


def queue(config: Path, *args: str) -> tuple[int, str, str]:
    done = run(*args, "--config", str(config))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_list_shows_what_mailq_shows(config: Path) -> None:
    """Each message shows its id, size, age, sender and state, then each
    recipient with its state, attempts, next attempt and last error."""
    code, out, err = queue(config, "queue", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    size = len(prepared_email(1, "a@example.test").data)
    assert lines[0] == (
        f"m1@example.test  {size} bytes  age 2h  from <sender@example.test>  pending"
    )
    assert lines[1] == (
        "  a@example.test  deferred  attempts=1  next in 9m  4.2.0 mailbox busy"
    )
    assert lines[2].endswith("  pending")
    assert lines[3:5] == [
        "  b@other.test  queued  attempts=0  due now",
        "  c@example.test  queued  attempts=0  due now",
    ]
    assert lines[5].startswith("m3@example.test  ")
    assert lines[5].endswith("  pending held")


def test_list_json_holds_every_field(config: Path) -> None:
    """`queue list --json` is a JSON array with each message's id, times,
    size, sender, state and recipients, timestamps in UTC ISO 8601."""
    code, out, _ = queue(config, "queue", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [m["id"] for m in listed] == [f"m{n}@example.test" for n in (1, 2, 3)]
    first = listed[0]
    assert first["size"] == len(prepared_email(1, "a@example.test").data)
    assert first["sender"] == "sender@example.test"
    assert 7200 <= first["age"] < 7300
    assert first["created"].endswith("Z")
    assert (first["held"], first["completed"]) == (False, False)
    [recipient] = first["recipients"]
    assert recipient["address"] == "a@example.test"
    assert recipient["result"] == "deferred"
    assert recipient["attempts"] == 1
    assert recipient["last_reply"] == "450 4.2.0 mailbox busy"
    assert recipient["status_code"] == "4.2.0"
    assert recipient["next_attempt"].endswith("Z")
    assert recipient["remote"] == {
        "host": "mx.example.test",
        "address": "127.0.0.1",
        "port": 25,
        "tls_version": "TLSv1.3",
        "tls_verified": True,
        "tls_policy": "sts",
        "tls_policy_domain": "example.test",
        "tls_policy_strings": [
            "version: STSv1",
            "mode: enforce",
            "mx: mx.example.test",
        ],
        "tls_result": "success",
        "tls_failure": None,
    }
    assert listed[2]["held"] is True


def test_count_and_status_take_json(config: Path) -> None:
    """`queue count --json` and `status ID --json` print JSON objects."""
    code, out, _ = queue(config, "queue", "count", "--json", "--pending")
    assert (code, json.loads(out)) == (0, {"count": 3})
    code, out, _ = queue(config, "status", "m2@example.test", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["id"] == "m2@example.test"
    assert [r["address"] for r in shown["recipients"]] == [
        "b@other.test",
        "c@example.test",
    ]


def test_show_prints_the_stored_bytes_exactly(config: Path, tmp_path: Path) -> None:
    """`queue show ID` writes the stored message byte for byte, as postcat -q
    does; with --json the bytes come base64-encoded beside the envelope."""
    done = run("queue", "show", "m2@example.test", "--config", str(config))
    assert done.returncode == 0
    storage = SqliteStorage(tmp_path / "outbox.db")
    stored = storage.email("m2@example.test")
    storage.close()
    assert done.stdout == stored.data
    code, out, _ = queue(config, "queue", "show", "<m2@example.test>", "--json")
    assert code == 0
    shown = json.loads(out)
    assert base64.b64decode(shown["data_base64"]) == stored.data
    assert shown["sender"] == "sender@example.test"
    assert shown["recipients"] == ["b@other.test", "c@example.test"]
    assert shown["size"] == len(stored.data)


def test_an_empty_queue_says_so(tmp_path: Path) -> None:
    """`queue list` on an empty queue prints "mail queue is empty" (and `[]`
    with --json); a selection that matches nothing says that instead."""
    db = tmp_path / "outbox.db"
    SqliteStorage(db).close()
    done = run("queue", "list", "--db", str(db))
    assert (done.returncode, done.stdout) == (0, b"mail queue is empty\n")
    assert run("queue", "list", "--db", str(db), "--json").stdout == b"[]\n"
    storage = SqliteStorage(db)
    storage.add(prepared_email(1), time.time())
    storage.close()
    done = run("queue", "list", "--db", str(db), "--held")
    assert (done.returncode, done.stdout) == (0, b"no message selected\n")


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "list", UNKNOWN],
        ["queue", "count", UNKNOWN],
        ["queue", "kick", UNKNOWN],
        ["queue", "hold", UNKNOWN],
        ["queue", "release", UNKNOWN],
        ["queue", "drop", UNKNOWN],
        ["queue", "show", UNKNOWN],
        ["status", UNKNOWN],
    ],
    ids=lambda args: "-".join(args[:-1]),
)
def test_ids_that_match_nothing_exit_1(config: Path, args: list[str]) -> None:
    """Every command given an id that names no message says so on stderr and
    exits 1."""
    code, _, err = queue(config, *args)
    assert code == 1
    assert UNKNOWN in err
    assert "Traceback" not in err


def test_known_ids_are_acted_on_beside_unknown_ones(config: Path) -> None:
    """`queue hold KNOWN UNKNOWN` holds the known message, names the unknown
    one, and exits 1."""
    code, out, err = queue(config, "queue", "hold", "m2@example.test", UNKNOWN)
    assert (code, out) == (1, "m2@example.test\n")
    assert f"no message with id {UNKNOWN!r}" in err
    assert queue(config, "queue", "count", "--held")[1] == "2\n"


@pytest.mark.parametrize(
    ("args", "out"),
    [
        (["queue", "count"], "3\n"),
        (["queue", "kick", "m1@example.test"], "m1@example.test\n"),
        (["queue", "hold", "m1@example.test"], "m1@example.test\n"),
        (["queue", "release", "m3@example.test"], "m3@example.test\n"),
        (["queue", "drop", "m3@example.test"], "m3@example.test\n"),
    ],
    ids=lambda value: value[1] if isinstance(value, list) else "",
)
def test_every_queue_command_takes_a_configuration_file(
    config: Path, args: list[str], out: str
) -> None:
    """--config FILE works in place of --db for each queue command."""
    assert queue(config, *args)[:2] == (0, out)


def test_the_configuration_file_may_come_from_the_environment(config: Path) -> None:
    """Without --config or --db, the file $MAILSTROM_CONFIG names is used."""
    done = run("queue", "count", env={"MAILSTROM_CONFIG": str(config)})
    assert (done.returncode, done.stdout) == (0, b"3\n")


def test_a_queue_kept_in_memory_cannot_be_listed(tmp_path: Path) -> None:
    """A configuration without [storage] has no queue another process can
    see: the commands say so and exit 2."""
    path = tmp_path / "memory.toml"
    path.write_text(config_text(port=25, db=None), encoding="utf-8")
    done = run("queue", "list", "--config", str(path))
    assert done.returncode == 2
    assert b"kept in the memory of one process" in done.stderr


def test_db_and_config_exclude_each_other(config: Path, tmp_path: Path) -> None:
    """Naming both a database and a configuration file is a usage error."""
    done = run("queue", "list", "--config", str(config), "--db", str(tmp_path / "x.db"))
    assert done.returncode == 2
    assert b"not allowed with argument" in done.stderr


def completed_and_pending(storage: Storage, now: float) -> None:
    """m10 delivered three hours ago, m11 delivered now, m12 queued three
    hours ago and still pending."""
    for n, at in ((10, now - 3 * 3600), (11, now)):
        storage.add(prepared_email(n, "a@example.test"), at)
        [claim] = storage.claim_due(at, limit=10, lease=60.0)
        assert claim.message_id == f"m{n}@example.test"
        storage.record(
            claim,
            [
                dataclasses.replace(
                    r, result=DeliveryResult.DELIVERED, next_attempt_at=None
                )
                for r in claim.status.recipients
            ],
        )
    storage.add(prepared_email(12, "a@example.test"), now - 3 * 3600)


def test_purge_removes_mail_completed_longer_ago_than_asked(tmp_path: Path) -> None:
    """``queue purge --older-than 1h`` removes the message delivered three
    hours ago, and keeps the one delivered now and the pending one, however
    old."""
    path = tmp_path / "purge.db"
    storage = SqliteStorage(path)
    completed_and_pending(storage, time.time())
    storage.close()
    done = run("queue", "purge", "--older-than", "1h", "--db", str(path))
    assert (done.returncode, done.stderr.decode().strip()) == (0, "purged 1 message")
    storage = SqliteStorage(path)
    left = [s.message_id for s in storage.find(QueueFilter())]
    storage.close()
    assert sorted(left) == ["m11@example.test", "m12@example.test"]
    done = run("queue", "purge", "--older-than", "1h", "--db", str(path))
    assert done.stderr.decode().strip() == "purged 0 messages"


def test_purge_needs_an_age(config: Path) -> None:
    """Without --older-than, or with an age that is not one, purge is a usage
    error and removes nothing."""
    for args in ([], ["--older-than", "soon"]):
        code, _, err = queue(config, "queue", "purge", *args)
        assert code == 2, err
    assert queue(config, "queue", "count")[1].strip() == "3"
