"""``python manage.py mailstrom_worker``: deliver the queue of Django's settings.

The same daemon as ``mailstrom-py worker``, on the settings of
:mod:`mailstrom_py.contrib.django.conf` instead of ``--config``: it runs in the
foreground, logs to standard error, stops gracefully at the first SIGTERM or
SIGINT and at once at the second, and exits as that command does (0 after a
graceful stop, 1 when delivery cannot start, 2 for bad settings).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand

from mailstrom_py.cli.logs import add_logging_options
from mailstrom_py.cli.worker import EXIT_CONFIG, serve_worker
from mailstrom_py.contrib.django import conf
from mailstrom_py.errors import ConfigError

__all__ = ["Command"]

PROG = "manage.py mailstrom_worker"


class Command(BaseCommand):  # type: ignore[misc]
    """The ``mailstrom_worker`` management command."""

    help = (
        "Deliver the mail queued by the mailstrom_py email backend, in the"
        " foreground, until SIGTERM or SIGINT (a second signal stops at once)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_logging_options(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            loaded = conf.load()
        except ConfigError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None
        status = serve_worker(
            loaded,
            log_level=options["log_level"],
            log_format=options["log_format"],
            prog=PROG,
        )
        if status:
            raise SystemExit(status)
