"""The package's command line run in child processes, as a user runs it.

``run(*args)`` runs ``python -m mailstrom_py ARGS`` to its end; ``Daemon``
starts one that keeps running (a worker), collects its standard error line by
line, and signals it. ``config_text`` writes a configuration file that relays
to a loopback test server and keeps the queue in an SQLite file. Children get
this checkout first on ``PYTHONPATH`` and none of the caller's
``MAILSTROM_CONFIG`` or ``NOTIFY_SOCKET``. Like the other support modules this
one does not import ``mailstrom_py``; it only runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

__all__ = ["ROOT", "Daemon", "child_env", "config_text", "run"]

ROOT = Path(__file__).resolve().parents[2]
"""The checkout whose ``mailstrom_py`` the children import."""

_NOT_INHERITED = ("MAILSTROM_CONFIG", "NOTIFY_SOCKET")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours, this checkout first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


def run(
    *args: str,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m mailstrom_py *args`` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "mailstrom_py", *args],
        input=input,
        capture_output=True,
        env=child_env(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def config_text(
    *,
    port: int,
    db: str | Path | None,
    host: str = "127.0.0.1",
    helo_name: str = "app.example.test",
    logging: str = 'level = "INFO"',
    extra: str = "",
) -> str:
    """A configuration file relaying to ``host:port`` without TLS, with the
    queue in the SQLite file ``db`` (none: no ``[storage]`` section)."""
    storage = "" if db is None else f"[storage]\nsqlite = {json.dumps(str(db))}\n\n"
    return (
        f"helo_name = {json.dumps(helo_name)}\n{extra}\n\n"
        f'[delivery]\nkind = "relay"\nhost = {json.dumps(host)}\nport = {port}\n'
        'tls = "none"\n\n'
        '[retry]\ninitial_delay = "1s"\n\n'
        f"{storage}[logging]\n{logging}\n"
    )


class Daemon:
    """``python -m mailstrom_py *args`` kept running; a context manager that
    kills it at exit if it still runs.

    ``lines`` holds its standard error so far, one entry per line. ``module``
    runs another module instead (``django`` for a management command).
    """

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        module: str = "mailstrom_py",
    ) -> None:
        self.args = args
        self.module = module
        self.env = child_env(env)
        self.cwd = cwd
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, "not started"
        return self._process

    def start(self) -> Daemon:
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for raw in self._process.stderr:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(
        self, wanted: str | Callable[[str], bool], timeout: float = 30
    ) -> str:
        """Return the first line of standard error that holds ``wanted`` (or
        satisfies it); raise AssertionError, with the lines, if none comes."""
        test = (lambda line: wanted in line) if isinstance(wanted, str) else wanted
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if test(line):
                        return line
                left = deadline - time.monotonic()
                ended = self.process.poll() is not None and not (
                    self._reader and self._reader.is_alive()
                )
                if left <= 0 or ended:
                    raise AssertionError(
                        f"no line with {wanted!r}; standard error:\n"
                        + "\n".join(self.lines)
                    )
                self._changed.wait(min(left, 0.1))

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to end; return its exit status."""
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(30)
        if process is not None and process.stderr is not None:
            if self._reader is not None:
                self._reader.join(30)
            process.stderr.close()
