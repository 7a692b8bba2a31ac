"""Django in child processes: a script run after ``django.setup()``, or a
management command kept running, with settings the test gives.

The settings are those of ``tests/djangoapp/settings.py`` with the test's own
put over them (through the environment), so nothing is configured in the
test process and no setting leaks from one test into another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

from .cli import ROOT, Daemon, child_env

__all__ = ["django_env", "manage", "run_django", "worker_command"]

#: The settings module of the test project, importable from tests/.
SETTINGS_MODULE = "djangoapp.settings"

_PRELUDE = "import json\nimport django\ndjango.setup()\n"


def django_env(settings: Mapping[str, object]) -> dict[str, str]:
    """The environment of a child that runs Django with ``settings`` added."""
    return child_env(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "MAILSTROM_TEST_DJANGO": json.dumps(settings),
        }
    )


def run_django(
    script: str, settings: Mapping[str, object], *, cwd: Path, timeout: float = 60
) -> object:
    """Run ``script`` in a fresh interpreter after ``django.setup()``; return
    what it prints last, read as JSON (the script must print one line)."""
    done = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(script)],
        env=django_env(settings),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.splitlines()[-1])


def manage(
    *args: str, settings: Mapping[str, object], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m django ARGS`` (what ``manage.py ARGS`` does) to its end."""
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=django_env(settings),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def worker_command(settings: Mapping[str, object], *, cwd: Path) -> Daemon:
    """``python -m django mailstrom_worker``, not yet started."""
    return Daemon(
        "mailstrom_worker", env=django_env(settings), cwd=cwd, module="django"
    )
