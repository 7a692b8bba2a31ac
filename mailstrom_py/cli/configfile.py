"""``mailstrom-py config``: check a configuration file; the demo configuration."""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from collections.abc import Callable

from ..config.loader import load_config
from ..config.render import render
from ..config.settings import LoadedConfig
from ..errors import ConfigError

__all__ = ["DEMO_CONFIG", "add_config_command", "load_demo_config", "run_config"]

#: The demonstration configuration's file name in this package.
DEMO_CONFIG = "demo.toml"


def load_demo_config() -> LoadedConfig:
    """Load the demonstration configuration that ships with the package.

    It relays to 127.0.0.1:8025 without TLS and keeps the queue in
    ``mailstrom-demo.db`` in the working directory.
    """
    resource = importlib.resources.files(__package__).joinpath(DEMO_CONFIG)
    with importlib.resources.as_file(resource) as path:
        return load_config(path)


def add_config_command(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``config check FILE`` through the subcommands' ``add_parser``."""
    config = add_parser("config", help="check a configuration file")
    actions = config.add_subparsers(dest="action", required=True)
    text = "load FILE and print all its settings, defaults included, secrets hidden"
    check = actions.add_parser("check", help=text, description=text)
    check.add_argument("file", metavar="FILE", help="the TOML configuration file")


def run_config(args: argparse.Namespace) -> int:
    """Run ``config check``: 0 with the settings printed, 2 for a bad file."""
    try:
        loaded = load_config(args.file)
    except ConfigError as exc:
        print(f"mailstrom-py: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(loaded))
    return 0
