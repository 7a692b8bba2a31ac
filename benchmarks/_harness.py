"""What every variant of the throughput benchmark shares: the sink it sends to,
the figures one run of a variant gives, and the variant itself."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"

_AIOSMTPD_SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Sink:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        return "250 2.0.0 ok"
c = Controller(Sink(), hostname=sys.argv[1], port=int(sys.argv[2]),
               server_hostname="sink.test")
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
print(Sink.count, flush=True)
"""


class VariantSkipped(Exception):
    """Raised when a variant cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class MachineLoad:
    """Machine-wide CPU use over a stretch of time, every process's on the
    machine included: the cores busy on average, and the cores' worth of time
    the hypervisor gave to other machines (steal)."""

    busy: float
    steal: float


class LoadMeter:
    """Measures :class:`MachineLoad` from ``/proc/stat`` between two calls;
    gives None where there is no ``/proc/stat``."""

    def __init__(self) -> None:
        self._start = _ticks()

    def stop(self) -> MachineLoad | None:
        end = _ticks()
        if self._start is None or end is None:
            return None
        busy, steal, total = (b - a for a, b in zip(self._start, end, strict=True))
        cores = os.cpu_count() or 1
        return MachineLoad(busy / total * cores, steal / total * cores)


def _ticks() -> tuple[int, int, int] | None:
    """Busy, stolen and all CPU time of the machine so far, in clock ticks."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(n) for n in stat.readline().split()[1:9]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, steal, sum(fields)


@dataclass(frozen=True)
class Result:
    """One run of one variant: ``messages`` delivered in ``seconds`` of wall
    time for ``cpu`` seconds of CPU (this process's, plus its workers' when
    they are other processes), with the time of each ``send_email()`` on the
    caller's thread when the variant has one."""

    messages: int
    seconds: float
    cpu: float
    send_latencies: tuple[float, ...] = ()
    load: MachineLoad | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


@dataclass(frozen=True)
class Variant:
    """A named way of sending the benchmark's messages to the sink.

    ``synced`` marks the variants whose caller waits for a disk sync per
    commit, whose rate is also shown as a fraction of the disk's commit rate;
    ``on_request`` ones run only when asked for by number or option.
    """

    name: str
    run: Callable[[Sink], Result]
    synced: bool = False
    on_request: bool = False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def cpu_seconds() -> float:
    """User and system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sink:
    """A sink process on loopback that counts what it receives."""

    def __init__(self, kind: str) -> None:
        self.port = free_port()
        self.kind = kind
        if kind == "smtp-sink":
            # -c prints a running count; a file, not a pipe, so it never blocks.
            self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in count())
            cmd = ["smtp-sink", "-c", "-u", "nobody", f"{LOOPBACK}:{self.port}", "256"]
            self.proc = subprocess.Popen(
                cmd, stdout=self.log, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((LOOPBACK, self.port), timeout=1),
                ):
                    break
                time.sleep(0.05)
        else:
            cmd = [sys.executable, "-c", _AIOSMTPD_SINK, LOOPBACK, str(self.port)]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert self.proc.stdout is not None
            assert self.proc.stdout.readline().strip() == "ready"

    def wait_for(self, messages: int, stall_s: float = 30) -> int:
        """Wait until a live smtp-sink has received ``messages`` messages, or until
        its count has not moved for ``stall_s`` seconds; return the count."""
        assert self.kind == "smtp-sink"
        received, moved = 0, time.monotonic()
        while received < messages and time.monotonic() - moved < stall_s:
            time.sleep(0.005)
            # pread leaves alone the file offset smtp-sink shares and writes at.
            size = os.fstat(self.log.fileno()).st_size
            tail = os.pread(self.log.fileno(), 256, max(size - 256, 0))
            counts = re.findall(rb"mesg=(\d+)\r", tail)
            if counts and int(counts[-1]) > received:
                received, moved = int(counts[-1]), time.monotonic()
        return received

    def count(self) -> int:
        """Stop the sink and return how many messages it accepted."""
        if self.kind == "smtp-sink":
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
            self.log.seek(0)
            counts = re.findall(r"mesg=(\d+)", self.log.read())
            self.log.close()
            return int(counts[-1]) if counts else 0
        out, _ = self.proc.communicate("", timeout=30)
        return int(out.split()[-1])
