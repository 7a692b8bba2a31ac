"""What importing mailstrom_py costs, alone and in a relay-only program.

Each figure is the median (and the spread, min to max) over N fresh
interpreters, so nothing is ever imported twice:

* ``python -c pass``: the interpreter's own start-up, for reference;
* ``-X importtime``: the cumulative time Python reports for ``mailstrom_py``;
* ``import mailstrom_py``: wall time around the import statement, in the child;
* a relay-only program, timed inside the child: the import, then
  ``Config(delivery=RelayConfig(...))`` and ``Mailstrom(config)``, then one
  ``send_email()`` to a sink on 127.0.0.1 waited on until delivered, then
  ``stop()``; and the same program's process wall time, start-up included.

It also prints which of the heavy libraries (dnspython, dkimpy, cryptography,
PyNaCl) the relay-only program had loaded by its end: none, when they are
imported where they are used. The sink is a few lines of SMTP on a thread of
this process, so the children measure only the client side.

    python benchmarks/import_time.py            # 15 runs of each
    python benchmarks/import_time.py --runs 41
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socketserver
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
HEAVY = ("dns", "dkim", "cryptography", "nacl")
#: The relay-only program's phases, each timed from its start.
PHASES = ("relay import", "relay built", "relay sent", "relay stopped")
LABELS = {
    "startup": "python -c pass (start-up, for reference)",
    "importtime": "-X importtime: mailstrom_py (cumulative)",
    "import": "import mailstrom_py (wall, in process)",
    "relay import": "relay-only program: import",
    "relay built": "  + Config(RelayConfig(...)) + Mailstrom(config)",
    "relay sent": "  + send_email() and wait until delivered",
    "relay stopped": "  + stop()",
    "wall": "  its process wall time (start-up included)",
}

_RELAY_PROGRAM = """
import json, sys, time
started = time.perf_counter()
import mailstrom_py
imported = time.perf_counter()
config = mailstrom_py.Config(
    helo_name="bench.test",
    delivery=mailstrom_py.RelayConfig(
        host=sys.argv[1], port=int(sys.argv[2]), tls="none"
    ),
)
mailer = mailstrom_py.Mailstrom(config)
built = time.perf_counter()
mailer.start()
message_id = mailer.send_email(
    b"From: app@example.test\\r\\nTo: user@example.test\\r\\n"
    b"Subject: hi\\r\\n\\r\\nHello.\\r\\n"
)
status = mailer.wait(message_id, timeout=10)
sent = time.perf_counter()
mailer.stop()
stopped = time.perf_counter()
assert status.succeeded, status
heavy = sorted(name for name in sys.modules if name.split(".")[0] in {heavy})
times = [imported, built, sent, stopped]
print(json.dumps([t - started for t in times] + [heavy]))
"""


class _SinkHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept every message: 250 to all, 354 to DATA."""

    def handle(self) -> None:
        self.wfile.write(b"220 sink.test ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                self.wfile.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 2.0.0 bye\r\n")
                return
            elif verb == b"EHLO":
                self.wfile.write(b"250-sink.test\r\n250 PIPELINING\r\n")
            else:
                self.wfile.write(b"250 2.0.0 ok\r\n")


class _Sink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def sink() -> Iterator[int]:
    """Run the SMTP sink on 127.0.0.1 and yield its port."""
    with _Sink((LOOPBACK, 0), _SinkHandler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join()


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(args: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return time.perf_counter() - started, done


def startup() -> float:
    """Seconds to start and end an interpreter that does nothing."""
    return _run(["-c", "pass"])[0]


def importtime() -> float:
    """Seconds ``-X importtime`` reports for ``import mailstrom_py``, cumulative."""
    _, done = _run(["-X", "importtime", "-c", "import mailstrom_py"])
    line = re.search(
        r"^import time:\s+\d+ \|\s+(\d+) \| mailstrom_py$", done.stderr, re.M
    )
    assert line is not None, done.stderr[-2000:]
    return int(line.group(1)) / 1e6


def import_wall() -> float:
    """Seconds around ``import mailstrom_py`` inside a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import mailstrom_py; "
        "print(time.perf_counter() - t)"
    )
    return float(_run(["-c", code])[1].stdout)


def relay_program(port: int) -> tuple[float, list[Any]]:
    """The relay-only program: its process wall time and its own phase times."""
    code = _RELAY_PROGRAM.replace("{heavy}", repr(set(HEAVY)))
    wall, done = _run(["-c", code, LOOPBACK, str(port)])
    phases: list[Any] = json.loads(done.stdout)
    return wall, phases


def _figure(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{label:<52} {statistics.median(ms):7.1f} ms"
        f"   ({min(ms):.1f} .. {max(ms):.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters each")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {}
    heavy: set[str] = set()
    with sink() as port:
        # Round robin, so that a burst of load elsewhere on the machine falls
        # on every figure alike.
        for _ in range(args.runs):
            figures.setdefault("startup", []).append(startup())
            figures.setdefault("importtime", []).append(importtime())
            figures.setdefault("import", []).append(import_wall())
            wall, phases = relay_program(port)
            for name, value in zip(PHASES, phases, strict=False):
                figures.setdefault(name, []).append(value)
            figures.setdefault("wall", []).append(wall)
            heavy.update(name.split(".")[0] for name in phases[-1])
    print(f"python {sys.version.split()[0]}, median of {args.runs} fresh interpreters")
    for name, label in LABELS.items():
        print(_figure(label, figures[name]))
    print(
        "heavy libraries the relay-only program loaded:",
        ", ".join(sorted(heavy)) or "none",
    )


if __name__ == "__main__":
    main()
