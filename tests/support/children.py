"""Child Python processes for crash tests, and the SQLite files they leave.

A crash test runs a script in a fresh interpreter that imports this checkout's
package, kills it with SIGKILL wherever it is, and inspects what it left.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["ROOT", "integrity", "kill", "readline", "spawn", "wait_until"]

ROOT = Path(__file__).resolve().parent.parent.parent
"""The checkout whose package the children import."""


def spawn(
    script: str, *args: object, prefix: list[str] | None = None
) -> subprocess.Popen[str]:
    """Start `script` in a fresh interpreter that imports this checkout's package."""
    return subprocess.Popen(
        [*(prefix or []), sys.executable, "-c", script, *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def readline(proc: subprocess.Popen[str]) -> str:
    """The child's next line of output (it must not have died)."""
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return line.strip()


def kill(proc: subprocess.Popen[str]) -> list[str]:
    """SIGKILL the child; return every line it printed."""
    proc.kill()
    out, _ = proc.communicate(timeout=30)
    return [line for line in out.splitlines() if line]


def wait_until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    """Poll `predicate` (for state in another process) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        threading.Event().wait(0.05)


def integrity(db: Path) -> str:
    """The result of SQLite's ``PRAGMA integrity_check`` on ``db``."""
    with sqlite3.connect(db) as raw:
        [(result,)] = raw.execute("PRAGMA integrity_check").fetchall()
    raw.close()
    return str(result)
