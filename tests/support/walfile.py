"""Reading an SQLite write-ahead log file, to count what was committed."""

from __future__ import annotations

from pathlib import Path

__all__ = ["commits_in_wal"]


def commits_in_wal(db: Path) -> int:
    """Count the transactions in the write-ahead log of `db`: its valid commit
    frames, those whose salts match the log's header (SQLite's WAL file format)."""
    wal = Path(f"{db}-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    salts = wal[16:24]
    commits = 0
    for offset in range(32, len(wal) - 24 - page_size + 1, 24 + page_size):
        frame = wal[offset : offset + 24]
        if frame[8:16] != salts:
            break  # left over from before the log was last restarted
        commits += frame[4:8] != bytes(4)  # a commit frame records the db size
    return commits
