"""A user's project on disk, and pytest run on it in a fresh process.

The plugin reaches pytest through the ``pytest11`` entry point of an installed
mailstrom_py; where the installed metadata predates that entry point (an
editable install made before it was declared), the run names the plugin with
``-p`` instead. Either way the mailstrom_py imported is this checkout's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["PLUGIN", "plugin_is_installed", "run_pytest", "write_project"]

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "mailstrom_py.testing.plugin"

#: Warnings are errors, as in a strict project; no other ini file is found.
PYTEST_INI = """
[pytest]
filterwarnings =
    error
addopts = --strict-markers
"""


def plugin_is_installed() -> bool:
    """True when pytest finds the plugin through its entry point."""
    return any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (name: text, dedented) and a strict pytest.ini into ``root``."""
    for name, text in {"pytest.ini": PYTEST_INI, **files}.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``project`` in a fresh process, as its developer would."""
    plugin = [] if plugin_is_installed() else ["-p", PLUGIN]
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("PYTEST")
    }
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *plugin, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
