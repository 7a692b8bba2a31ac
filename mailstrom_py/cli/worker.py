"""``mailstrom-py worker``: deliver the queue of a configuration file, as a daemon.

It runs in the foreground, logs to standard error, and stops on SIGTERM or
SIGINT. The first signal stops it gracefully: no new attempt begins, every
SMTP transaction under way runs to its end (each step has its own timeout)
and its outcome is recorded, and then it exits 0. A second signal ends it at
once with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), as a
shell reports a process that a signal ended; systemd then counts the stop as
a failure, rightly, since a message whose final dot was sent but not yet
answered is sent again later.

Exit status: 0 after a graceful stop; 1 when the queue cannot be opened or
delivery cannot start; 2 for a bad configuration (as ``config check``);
130 or 143 after a second signal.

Under systemd (``Type=notify``) it reports ``READY=1`` once delivering and
``STOPPING=1`` when a stop begins, through ``$NOTIFY_SOCKET``.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from ..config import RelayConfig
from ..config.loader import load_config
from ..config.settings import LoadedConfig, LogFormat
from ..core import Mailstrom
from ..errors import ConfigError, StorageError, WorkerError
from ..storage import Storage
from .common import config_path, open_storage, require_shared_storage
from .logs import add_logging_options, configure_logging, logging_settings
from .sdnotify import notify

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "add_worker_command",
    "run_worker",
    "serve_worker",
]

log = logging.getLogger(__name__)

#: The exit status for a configuration that cannot be used (as ``config check``).
EXIT_CONFIG = 2
#: The exit status when the queue cannot be opened or delivery cannot start.
EXIT_FAILURE = 1
#: The signals that stop the worker.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# The longest the main thread waits without running Python, in seconds: the
# most a stop signal's handler can be put off.
_SIGNAL_CHECK = 0.2

_Handler = Callable[[int, FrameType | None], object] | int | None


def add_worker_command(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``worker`` through the subcommands' ``add_parser``."""
    text = (
        "deliver the queue of a configuration file in the foreground until"
        " SIGTERM or SIGINT (a second signal stops at once)"
    )
    worker = add_parser("worker", help=text, description=text)
    worker.add_argument(
        "--config",
        metavar="FILE",
        help="the TOML configuration file (default: $MAILSTROM_CONFIG, else"
        " /etc/mailstrom/mailstrom.toml)",
    )
    add_logging_options(worker)


def run_worker(args: argparse.Namespace) -> int:
    """Run the worker until it is stopped by a signal; return the exit status."""
    try:
        loaded = load_config(config_path(args.config))
    except ConfigError as exc:
        print(f"mailstrom-py worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return serve_worker(loaded, log_level=args.log_level, log_format=args.log_format)


def serve_worker(
    loaded: LoadedConfig,
    *,
    log_level: str | None = None,
    log_format: LogFormat | None = None,
    prog: str = "mailstrom-py worker",
) -> int:
    """Deliver the queue of ``loaded`` until a stop signal; return the exit status.

    What ``mailstrom-py worker`` does once it has read its configuration, for
    every command that runs the worker on settings of its own (a web
    framework's management command). Call it from the main thread: it takes
    over SIGTERM and SIGINT, and gives them back when it returns.

    Args:
        loaded: the settings; their storage must be a file, not memory.
        log_level: overrides ``loaded.logging.level`` when given.
        log_format: overrides ``loaded.logging.format`` when given.
        prog: the program named in an error message about the settings.
    """
    try:
        require_shared_storage(loaded)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(logging_settings(loaded.logging, log_level, log_format))
    signals = StopSignals()
    signals.install()
    try:
        return _serve(loaded, signals)
    finally:
        signals.restore()


def _serve(loaded: LoadedConfig, signals: StopSignals) -> int:
    try:
        mailer = _open_mailer(loaded)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except StorageError as exc:
        log.error("cannot open the queue: %s", exc)
        return EXIT_FAILURE
    try:
        mailer.start()
    except (StorageError, WorkerError) as exc:
        log.error("cannot start delivering: %s", exc)
        mailer.stop(drain=0)
        return EXIT_FAILURE
    log.info(
        "delivering %s from %s with %d delivery threads",
        _route(loaded),
        _queue(loaded),
        loaded.config.delivery_threads,
    )
    notify("READY=1\nSTATUS=delivering")
    signum = signals.wait()
    log.info(
        "%s received: finishing the deliveries in progress"
        " (a second signal stops at once)",
        signal.Signals(signum).name,
    )
    notify("STOPPING=1\nSTATUS=finishing the deliveries in progress")
    # The queue is durable: what is due waits for the next start, so a stop
    # only lets the transactions under way finish (no drain).
    _stop_heeding_signals(mailer)
    log.info("stopped")
    return 0


def _stop_heeding_signals(mailer: Mailstrom) -> None:
    """Stop ``mailer`` from another thread, the main one waiting for it in
    short steps.

    The kernel may hand a signal to any thread; Python then runs its handler
    only once the main thread next runs Python code, which a wait without a
    timeout (joining the delivery threads) could put off for good.
    """
    failure: list[BaseException] = []

    def stop() -> None:
        try:
            mailer.stop(timeout=None, drain=0)
        except BaseException as exc:  # noqa: BLE001 (raised again in the main thread)
            failure.append(exc)

    stopper = threading.Thread(target=stop, name="mailstrom-stop", daemon=True)
    stopper.start()
    while stopper.is_alive():
        stopper.join(_SIGNAL_CHECK)
    if failure:
        raise failure[0]


def _open_mailer(loaded: LoadedConfig) -> Mailstrom:
    storage: Storage = open_storage(loaded.storage)
    try:
        return Mailstrom(loaded.config, storage)
    except BaseException:
        storage.close()
        raise


def _queue(loaded: LoadedConfig) -> str:
    if loaded.storage.sqlite is not None:
        return loaded.storage.sqlite
    return "PostgreSQL"  # not the connection string: it may hold a password


def _route(loaded: LoadedConfig) -> str:
    delivery = loaded.config.delivery
    if isinstance(delivery, RelayConfig):
        return f"through {delivery.host}:{delivery.port} (tls {delivery.tls})"
    return "directly to each domain's MX hosts"


class StopSignals:
    """SIGTERM and SIGINT, as the worker takes them.

    The first asks for a graceful stop, which :meth:`wait` returns; the second
    ends the process at once (``os._exit``, with 128 + its number). The handler
    only writes to a pipe: it runs between two steps of the main thread, which
    may be holding any lock at that moment.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        self.received: int | None = None
        self._previous: dict[int, _Handler] = {}

    def install(self) -> None:
        """Take over the stop signals (call from the main thread)."""
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Give the signals back their earlier handlers and close the pipe."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        os.close(self._read)
        os.close(self._write)

    def wait(self) -> int:
        """Block until the first stop signal; return its number."""
        while self.received is None:
            # Timed, for a signal taken by another thread (_stop_heeding_signals).
            select.select([self._read], [], [], _SIGNAL_CHECK)
        return self.received

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            _exit_now(signum)
        self.received = signum
        os.write(self._write, b"!")


def _exit_now(signum: int) -> None:
    log.warning(
        "%s received again: exiting at once; transactions under way are cut"
        " short, and their messages are attempted again later",
        signal.Signals(signum).name,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(128 + signum)
