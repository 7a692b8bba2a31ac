"""``mailstrom-py dashboard``: serve the queue dashboard of a configuration file.

It listens where ``--listen`` (else ``[dashboard] listen``) says, loopback by
default, until SIGTERM or SIGINT. Actions need a token: ``--token-file``,
else ``[dashboard] token`` (or ``token_file``, ``token_env``), else one made
up at start and printed on standard error.

Exit status: 0 after a signal; 1 when the queue cannot be opened or the
address cannot be listened on; 2 for a usage error or a configuration it
cannot use (a token shorter than 16 characters among them).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import threading
from collections.abc import Callable

from ..config import RelayConfig
from ..config.loader import load_config
from ..config.settings import LoadedConfig, split_listen
from ..core import Outbox
from ..dashboard import Dashboard, DashboardServer, Guard, Options, dashboard_hosts
from ..dashboard.guard import is_loopback
from ..errors import ConfigError, StorageError
from ..events import Metrics, watch_queue
from ..storage import QueueAdmin
from ..storage.controls import Controls
from .common import config_path, open_storage, require_shared_storage
from .logs import add_logging_options, configure_logging, logging_settings
from .worker import EXIT_CONFIG, EXIT_FAILURE, StopSignals

__all__ = ["MIN_TOKEN_LENGTH", "add_dashboard_command", "run_dashboard"]

log = logging.getLogger(__name__)

#: The shortest token accepted: a guessable one is no lock.
MIN_TOKEN_LENGTH = 16
_PREFIX = "mailstrom-py dashboard:"


def add_dashboard_command(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``dashboard`` through the subcommands' ``add_parser``."""
    text = (
        "serve a web dashboard of the queue (and kick, hold, release or drop"
        " messages with a token) until SIGTERM or SIGINT"
    )
    dashboard = add_parser("dashboard", help=text, description=text)
    dashboard.add_argument(
        "--config",
        metavar="FILE",
        help="the TOML configuration file (default: $MAILSTROM_CONFIG, else"
        " /etc/mailstrom/mailstrom.toml)",
    )
    dashboard.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where to listen (default: [dashboard] listen, else 127.0.0.1:8026)",
    )
    dashboard.add_argument(
        "--read-only",
        action="store_true",
        help="show the pages without any action",
    )
    dashboard.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the token actions need from FILE (default: [dashboard] token,"
        " else one made up and printed)",
    )
    add_logging_options(dashboard)


def run_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard until a stop signal; return the exit status."""
    try:
        loaded = load_config(config_path(args.config))
        require_shared_storage(loaded)
        host, port = split_listen(args.listen or loaded.dashboard.listen)
        token, made_up = _token(args.token_file, loaded)
    except (ConfigError, ValueError) as exc:
        print(f"{_PREFIX} {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(logging_settings(loaded.logging, args.log_level, args.log_format))
    read_only = args.read_only or loaded.dashboard.read_only
    try:
        storage = open_storage(loaded.storage, create=False)
    except (ConfigError, StorageError) as exc:
        print(f"{_PREFIX} cannot open the queue: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not isinstance(storage, QueueAdmin):
        storage.close()
        print(f"{_PREFIX} the queue offers no queue operations", file=sys.stderr)
        return EXIT_CONFIG
    try:
        # The outbox fails messages as `queue fail` does, with the reports the
        # configuration asks for; it is not closed: the storage is closed below.
        try:
            outbox = Outbox(loaded.config, storage)
        except ConfigError as exc:
            print(f"{_PREFIX} {exc}", file=sys.stderr)
            return EXIT_CONFIG
        metrics = Metrics()
        watch_queue(metrics, storage)
        app = Dashboard(
            storage,
            Guard(token, _hosts(host, loaded)),
            _options(loaded, read_only),
            fail=outbox.fail,
            metrics=metrics.text,
            controls=storage if isinstance(storage, Controls) else None,
        )
        try:
            server = DashboardServer((host, port), app)
        except OSError as exc:
            print(f"{_PREFIX} cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        _announce(server, read_only, token if made_up else None)
        return _serve(server)
    finally:
        storage.close()


def _token(token_file: str | None, loaded: LoadedConfig) -> tuple[str, bool]:
    """The token, and whether it was made up for this run."""
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as file:
                token = file.read().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"--token-file: cannot read {token_file}: {exc}"
            ) from None
    elif loaded.dashboard.token is not None:
        token = loaded.dashboard.token
    else:
        return secrets.token_urlsafe(24), True
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{loaded.source}: dashboard.token: must be at least"
            f" {MIN_TOKEN_LENGTH} characters long"
        )
    return token, False


def _hosts(host: str, loaded: LoadedConfig) -> set[str]:
    return dashboard_hosts(host, loaded.dashboard.allowed_hosts)


def _options(loaded: LoadedConfig, read_only: bool) -> Options:
    delivery = loaded.config.delivery
    relay = None
    if isinstance(delivery, RelayConfig):
        relay = f"{delivery.host}:{delivery.port}"
    return Options(read_only=read_only, relay=relay)


def _announce(server: DashboardServer, read_only: bool, token: str | None) -> None:
    mode = " (read-only)" if read_only else ""
    print(f"{_PREFIX} serving {server.url}{mode}", file=sys.stderr)
    if not is_loopback(server.server_name):
        print(
            f"{_PREFIX} warning: listening beyond loopback, over plain HTTP:"
            " anyone who reaches it can read the queue; put it behind a proxy"
            " with TLS and authentication",
            file=sys.stderr,
        )
    if token is not None:
        print(
            f"{_PREFIX} token for actions (made up for this run): {token}",
            file=sys.stderr,
        )
    sys.stderr.flush()


def _serve(server: DashboardServer) -> int:
    signals = StopSignals()
    signals.install()
    thread = threading.Thread(
        target=server.serve_forever, name="dashboard", daemon=True
    )
    try:
        thread.start()
        signum = signals.wait()
        log.info("dashboard: signal %d received, stopping", signum)
        server.shutdown()
        thread.join()
    finally:
        server.server_close()
        signals.restore()
    return 0
