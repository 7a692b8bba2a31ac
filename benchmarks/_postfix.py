"""A private Postfix instance on loopback, and the throughput variant using it.

It has its own configuration, queue and data directories under one temporary
directory, listens for SMTP on a free 127.0.0.1 port and relays every message to
``[127.0.0.1]:relay_port`` (the benchmark's sink). The system's Postfix, its
configuration and its queue are never touched: every command is given ``-c`` with
the private configuration directory, which names every other directory. Postfix's
queue keeps its default durability (each queue file is synced to disk).

The master daemon runs as root, so the instance needs root; when it cannot start,
``PostfixUnavailable`` says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _harness import LOOPBACK, Result, Sink, VariantSkipped, cpu_seconds

#: The services of Debian's default master.cf that relaying over SMTP needs, all
#: outside a chroot (a chroot would need copies of /etc files in the queue), and
#: with the SMTP server on a private address instead of port 25.
_SERVICES = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class PostfixUnavailable(Exception):
    """Raised when a private Postfix cannot be started here; the message says why."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _main_cf(root: Path, relay_port: int) -> str:
    return "\n".join(
        [
            "compatibility_level = 3.6",
            f"queue_directory = {root / 'queue'}",
            f"data_directory = {root / 'data'}",
            f"maillog_file = {root / 'maillog'}",
            f"maillog_file_prefixes = {root}",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "smtp_bind_address = 127.0.0.1",
            "mynetworks = 127.0.0.0/8",
            # Nothing is local: every address is relayed to the sink, with no
            # DNS lookup (a bracketed IP address needs none).
            "mydestination =",
            f"relayhost = [127.0.0.1]:{relay_port}",
            "smtp_dns_support_level = disabled",
            "smtpd_peername_lookup = no",
            "myhostname = postfix.bench.test",
            "alias_maps =",
            "alias_database =",
            # The sink must count only the benchmark's own messages: a failure
            # defers instead of sending a bounce or a notice to the postmaster.
            "soft_bounce = yes",
            "notify_classes =",
            "",
        ]
    )


class PrivatePostfix:
    """Postfix relaying from ``127.0.0.1:port`` to ``[127.0.0.1]:relay_port``,
    between ``start()`` and ``stop()``."""

    def __init__(self, relay_port: int) -> None:
        self.relay_port = relay_port
        self.port = _free_port()
        self._root: Path | None = None
        self._binary = ""

    @property
    def config_directory(self) -> Path:
        assert self._root is not None
        return self._root / "etc"

    def start(self) -> None:
        """Start the instance and wait until it accepts connections; after a
        failure nothing is left running or on disk.

        Raises:
            PostfixUnavailable: when not root, when Postfix is not installed, or
                when it does not start.
        """
        if os.geteuid() != 0:
            raise PostfixUnavailable("needs root: Postfix's master daemon runs as root")
        search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
        self._binary = shutil.which("postfix", path=search) or ""
        if not self._binary:
            raise PostfixUnavailable("Postfix is not installed")
        self._root = Path(tempfile.mkdtemp(prefix="mailstrom-bench-postfix-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the instance and remove its directories; idempotent."""
        if self._root is None:
            return
        pid = self._master_pid()
        if pid is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._postfix("stop")
            if not _exited(pid, timeout_s=10):
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    self._postfix("abort")
                _exited(pid, timeout_s=5)
        shutil.rmtree(self._root, ignore_errors=True)
        if self._root.exists():
            print(f"warning: could not remove {self._root}")
        self._root = None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the instance's mail log."""
        assert self._root is not None
        try:
            text = (self._root / "maillog").read_text(errors="replace")
        except OSError:
            return "(no mail log)"
        return "\n".join(text.splitlines()[-lines:])

    def _postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self._binary, "-c", str(self.config_directory), command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _start(self) -> None:
        assert self._root is not None
        # Postfix's unprivileged daemons must reach the queue inside the root.
        self._root.chmod(0o755)
        (self._root / "queue").mkdir()
        self.config_directory.mkdir()
        (self.config_directory / "main.cf").write_text(
            _main_cf(self._root, self.relay_port)
        )
        (self.config_directory / "master.cf").write_text(
            _SERVICES.format(listen=f"{LOOPBACK}:{self.port}")
        )
        try:
            started = self._postfix("start")
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostfixUnavailable(f"postfix start: {exc}") from exc
        if started.returncode != 0:
            output = (started.stderr + started.stdout).strip().splitlines()
            raise PostfixUnavailable(
                f"postfix start exited with {started.returncode}: "
                + " / ".join(output[-3:])
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise PostfixUnavailable(
                        f"Postfix does not accept connections on port {self.port}"
                    ) from exc
                time.sleep(0.05)

    def _master_pid(self) -> int | None:
        assert self._root is not None
        try:
            return int((self._root / "queue" / "pid" / "master.pid").read_text())
        except (OSError, ValueError):
            return None


def _exited(pid: int, timeout_s: float) -> bool:
    """Whether process ``pid`` has exited (or is a zombie) within the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def run_postfix(sink: Sink, messages: list[bytes], connections: int = 4) -> Result:
    """A private Postfix relaying to the sink, fed by smtplib from ``connections``
    threads, each over its own reused connection; timed from the first submission
    until the sink has counted every message. Postfix's own CPU time is not in
    the result's, which is the submitting threads' only.

    Raises:
        VariantSkipped: when Postfix cannot run here.
    """
    if sink.kind != "smtp-sink":
        raise VariantSkipped("needs smtp-sink as the sink, to count while it runs")
    shares = [messages[n::connections] for n in range(connections)]
    failures: list[BaseException] = []

    def submit(port: int, share: list[bytes]) -> None:
        try:
            with smtplib.SMTP(
                LOOPBACK, port, local_hostname="bench.test", timeout=30
            ) as smtp:
                for raw in share:
                    smtp.sendmail("bench@example.test", ["sink@example.test"], raw)
        except (OSError, smtplib.SMTPException) as exc:
            failures.append(exc)

    postfix = PrivatePostfix(relay_port=sink.port)
    try:
        postfix.start()
    except PostfixUnavailable as exc:
        raise VariantSkipped(str(exc)) from exc
    try:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        submitters = [
            threading.Thread(target=submit, args=(postfix.port, share))
            for share in shares
        ]
        for submitter in submitters:
            submitter.start()
        for submitter in submitters:
            submitter.join()
        received = 0 if failures else sink.wait_for(len(messages))
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        if failures or received != len(messages):
            failure = f"{failures[0]}; " if failures else ""
            raise SystemExit(
                f"Postfix: {failure}sink received {received} of {len(messages)}; "
                f"its log ends:\n{postfix.log_tail()}"
            )
    finally:
        postfix.stop()
    return Result(len(messages), elapsed, cpu)
