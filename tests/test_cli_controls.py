"""``mailstrom-py suppression`` and ``destination`` through the real command
line in a child process, on the storage of a configuration file that a
mailer in this process shares."""

from __future__ import annotations

import json
import time
from pathlib import Path

from support.cli import config_text, run

from mailstrom_py import SqliteStorage


def command(config: Path, *args: str) -> tuple[int, str, str]:
    done = run(*args, "--config", str(config))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_suppression_add_list_remove(tmp_path: Path) -> None:
    """Addresses added on the command line are in the storage another process
    reads, listed with their reason and end; removing an address without an
    entry says so and exits 1."""
    db = tmp_path / "outbox.db"
    config = tmp_path / "mailstrom.toml"
    config.write_text(config_text(port=25, db=db), encoding="utf-8")
    SqliteStorage(db).close()
    code, out, err = command(
        config, "suppression", "add", "Gone@Example.test", "--reason", "complaint"
    )
    assert (code, out, err) == (0, "gone@example.test\n", "")
    storage = SqliteStorage(db)
    try:
        [entry] = storage.suppressions(time.time())
        assert (entry.address, entry.reason) == ("gone@example.test", "complaint")
        assert abs(entry.until - entry.since - 30 * 86400) < 1e-6
    finally:
        storage.close()
    code, out, _ = command(config, "suppression", "list")
    assert code == 0
    assert out.startswith("gone@example.test  since ")
    assert out.splitlines()[1] == "  complaint"
    code, out, _ = command(config, "suppression", "list", "--json")
    assert [e["address"] for e in json.loads(out)] == ["gone@example.test"]
    code, out, err = command(
        config, "suppression", "remove", "gone@example.test", "x@example.test"
    )
    assert (code, out) == (1, "gone@example.test\n")
    assert "x@example.test is not suppressed" in err
    assert command(config, "suppression", "list")[1] == "no address is suppressed\n"


def test_destination_suspend_list_resume(tmp_path: Path) -> None:
    """A suspension made on the command line lasts as long as --for says, and
    resume ends it; resuming a destination that is not suspended exits 1."""
    db = tmp_path / "outbox.db"
    config = tmp_path / "mailstrom.toml"
    config.write_text(config_text(port=25, db=db), encoding="utf-8")
    SqliteStorage(db).close()
    code, out, _ = command(
        config, "destination", "suspend", "Gmail", "--for", "2h", "--reason", "4.7.28"
    )
    assert code == 0 and out.startswith("gmail suspended until ")
    code, out, _ = command(config, "destination", "list", "--json")
    [entry] = json.loads(out)
    assert (entry["destination"], entry["reason"]) == ("gmail", "4.7.28")
    assert abs(entry["until"] - entry["since"] - 7200) < 1e-6
    assert command(config, "destination", "resume", "gmail")[:2] == (
        0,
        "gmail resumed\n",
    )
    code, _, err = command(config, "destination", "resume", "gmail")
    assert code == 1 and "gmail is not suspended" in err
    assert command(config, "destination", "list")[1] == "no destination is suspended\n"
    code, _, err = command(config, "destination", "suspend", "gmail", "--for", "x")
    assert code == 2 and "not a duration" in err
