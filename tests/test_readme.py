"""Every Python code block in README.rst runs as written, and every TOML block loads.

The Python blocks deliver to a test server on 127.0.0.1:8025, as the README tells
a reader to start one; the test starts it. The files and environment variables a
TOML block names (keys, secrets) are made up for it in a temporary directory.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from support.smtpd import SmtpServer

from mailstrom_py import load_config
from mailstrom_py.message.dkim import generate_key, write_key

README = Path(__file__).resolve().parent.parent / "README.rst"
BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", re.MULTILINE)
TOML_BLOCK = re.compile(r"^\.\. code-block:: toml\n\n((?:    .*\n|\n)+)", re.MULTILINE)
MARKDOWN_TOML = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


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


def toml_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    indented = [
        "\n".join(line[4:] for line in block.splitlines())
        for block in TOML_BLOCK.findall(text)
    ]
    return indented + MARKDOWN_TOML.findall(text)


def tables(value: object) -> Iterator[Mapping[str, object]]:
    """Every table in a parsed TOML document, arrays of tables included."""
    if isinstance(value, Mapping):
        yield value
        for item in value.values():
            yield from tables(item)
    elif isinstance(value, list):
        for item in value:
            yield from tables(item)


def test_the_readme_has_toml_examples() -> None:
    """The README shows a configuration file; this guards the extraction below."""
    assert len(toml_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(toml_blocks())))
def test_readme_toml_block_loads(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README TOML block number `index` loads with load_config()."""
    text = toml_blocks()[index]
    environ = {}
    for table in tables(tomllib.loads(text)):
        for key, value in table.items():
            if key.endswith("_env"):
                environ[str(value)] = "from-the-environment"
            elif key == "private_key" or key.endswith("_file"):
                made = tmp_path / str(value).lstrip("/")
                made.parent.mkdir(parents=True, exist_ok=True)
                if key == "private_key":
                    algorithm = table.get("algorithm", "rsa-sha256")
                    pair = generate_key("example.org", "s", algorithm, bits=1024)  # type: ignore[arg-type]
                    write_key(pair, made)
                else:
                    made.write_text("from-a-file\n", encoding="utf-8")
                text = text.replace(f'"{value}"', f'"{made}"')
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mailstrom.toml"
    path.write_text(text, encoding="utf-8")
    load_config(path, environ=environ)
