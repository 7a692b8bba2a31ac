"""The demo and the command line run end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailstrom_py import __version__
from mailstrom_py.cli import main
from mailstrom_py.cli.demo import run_demo


def test_demo_ends_in_delivered_failed_and_deferred() -> None:
    """The demo shows all three outcomes and the server's replies, and exits 0."""
    lines: list[str] = []
    assert run_demo(seconds=2.5, out=lines.append) == 0
    text = "\n".join(lines)
    assert "550 5.1.1" in text and "450 4.2.1" in text
    assert "Final results: deferred, delivered, failed" in text


def test_module_entry_point_runs_the_demo() -> None:
    """`python -m mailstrom_py demo` works as the README says."""
    done = subprocess.run(
        [sys.executable, "-m", "mailstrom_py", "demo", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DELIVERED" in done.stdout and "FAILED" in done.stdout


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert __version__ in capsys.readouterr().out
