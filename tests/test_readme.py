"""Every Python code block in README.rst runs as written, and every TOML block loads.

The blocks deliver to a test server on 127.0.0.1:8025, as the README tells a
reader to start one. A reader may well have that server running, so the test
never binds 8025: it starts its server on a free port and puts that port in
place of the number 8025 in each block's parsed code.

TOML blocks load: the files and environment variables a block names (keys,
secrets) are made up for it in a temporary directory.

A block that defines test functions is a test module: it runs as a reader would
run it, with pytest (in a fresh process, with the library's pytest plugin), and
every one of its tests must pass.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import CodeType

import pytest
from support.smtpd import SmtpServer
from support.userproject import run_pytest, write_project

from mailstrom_py import load_config
from mailstrom_py.message.dkim import generate_key, write_key

README = Path(__file__).resolve().parent.parent / "README.rst"
BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", re.MULTILINE)
#: The port of the README's Quickstart server.
README_PORT = 8025
#: The tests that run the blocks, as pytest names them from the checkout.
BLOCKS = "tests/test_readme.py::test_readme_block_runs"
TOML_BLOCK = re.compile(r"^\.\. code-block:: toml\n\n((?:    .*\n|\n)+)", re.MULTILINE)
MARKDOWN_TOML = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return [
        "\n".join(line[4:] for line in block.splitlines())
        for block in BLOCK.findall(text)
    ]


class _Port(ast.NodeTransformer):
    """Replaces the integer literal ``README_PORT`` with another port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if type(node.value) is int and node.value == README_PORT:
            return ast.copy_location(ast.Constant(self.port), node)
        return node


def compiled_tree(index: int, port: int) -> ast.Module:
    """README block ``index``, parsed, aimed at 127.0.0.1:``port``."""
    name = f"README.rst block {index}"
    tree = _Port(port).visit(ast.parse(python_blocks()[index], name))
    assert str(README_PORT) not in ast.unparse(tree), "8025 outside a port number"
    assert isinstance(tree, ast.Module)
    return tree


def compiled(index: int, port: int) -> CodeType:
    """README block ``index``, compiled to deliver to 127.0.0.1:``port``."""
    return compile(compiled_tree(index, port), f"README.rst block {index}", "exec")


def defined_tests(code: str) -> list[str]:
    """The test functions a block defines; a block with some is a test module."""
    return [
        node.name
        for node in ast.parse(code).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]


@pytest.fixture(scope="module")
def readme_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_the_readme_has_python_examples() -> None:
    """The README shows code; this guards the extraction below."""
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(
    index: int, readme_server: SmtpServer, tmp_path: Path
) -> None:
    """README block number `index` runs without error (its tests pass, for a
    block of tests)."""
    tests = defined_tests(python_blocks()[index])
    if not tests:
        exec(compiled(index, readme_server.port), {})  # noqa: S102
        return
    code = ast.unparse(compiled_tree(index, readme_server.port))
    project = write_project(tmp_path, {"test_readme_block.py": code})
    done = run_pytest(project, "-q")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(tests)} passed" in done.stdout


def test_the_readme_shows_a_test_module_for_the_pytest_plugin() -> None:
    """One block is a test module using the mailstrom_outbox fixture, so the
    pytest plugin's own example is run by the test above."""
    assert any(
        "mailstrom_outbox" in block and defined_tests(block)
        for block in python_blocks()
    )


def test_the_readme_tests_pass_while_the_quickstart_server_holds_8025() -> None:
    """With a server on 127.0.0.1:8025, as the Quickstart has a reader start,
    the README's blocks still run (in a pytest of their own), and none of
    their mail goes to that server."""
    quickstart: SmtpServer | None = SmtpServer(port=README_PORT)
    try:
        quickstart.start()
    except OSError:
        quickstart = None  # 8025 is taken already, which is the point
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", BLOCKS],
            cwd=README.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert f"{len(python_blocks())} passed" in done.stdout
        if quickstart is not None:
            assert quickstart.handler.connections == 0
    finally:
        if quickstart is not None:
            quickstart.stop()


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
