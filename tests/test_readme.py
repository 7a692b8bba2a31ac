"""Every Python code block in README.rst runs as written.

The blocks deliver to a test server on 127.0.0.1:8025, as the README tells a
reader to start one; the test starts it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.smtpd import SmtpServer

README = Path(__file__).resolve().parent.parent / "README.rst"
BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", re.MULTILINE)


def python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return [
        "\n".join(line[4:] for line in block.splitlines())
        for block in BLOCK.findall(text)
    ]


@pytest.fixture(scope="module")
def readme_server() -> Iterator[SmtpServer]:
    with SmtpServer(port=8025) as server:
        yield server


def test_the_readme_has_python_examples() -> None:
    """The README shows code; this guards the extraction below."""
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(index: int, readme_server: SmtpServer) -> None:
    """README block number `index` runs without error."""
    code = python_blocks()[index]
    exec(compile(code, f"README.rst block {index}", "exec"), {})  # noqa: S102
