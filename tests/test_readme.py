"""Every Python code block in README.rst runs as written, every TOML block
loads, and every console block of the command line runs.

The blocks deliver to a test server on 127.0.0.1:8025, as the README tells a
reader to start one. A reader may well have that server running, so the test
never binds 8025: it starts its server on a free port and puts that port in
place of the number 8025 in each block's parsed code.

TOML blocks load: the files and environment variables a block names (keys,
secrets) are made up for it in a temporary directory.

A block that defines test functions is a test module: it runs as a reader would
run it, with pytest (in a fresh process, with the library's pytest plugin), and
every one of its tests must pass. The block of Django settings runs as the
others do, and its settings then run a Django project: its mail is queued and
delivered as the README says.

Console blocks that run ``mailstrom-py`` or ``sendmail`` run in README order,
each command in bash, as a reader would type them: with the README's own
configuration file (its TOML block headed ``# /etc/mailstrom/mailstrom.toml``),
relaying to a loopback server, and the system paths they name
(``/etc/mailstrom/``, ``/var/lib/mailstrom/``, ``/usr/sbin/``,
``/usr/local/bin/``) moved into a temporary directory. The worker and the
dashboard they start run in the background until the end, when a SIGTERM must
stop each with 0; the dashboard listens on a free port in place of its default
(a reader may have one running), and must serve its overview.
"""

from __future__ import annotations

import ast
import configparser
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import CodeType

import pytest
from support.cli import Daemon, child_env, run
from support.djangoproc import run_django, worker_command
from support.smtpd import SmtpServer, SmtpServerFactory
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
CONSOLE_BLOCK = re.compile(
    r"^( *)\.\. code-block:: console\n\n((?:\1    .*\n|\n)+)", re.MULTILINE
)
INI_BLOCK = re.compile(r"^\.\. code-block:: ini\n\n((?:    .*\n|\n)+)", re.MULTILINE)
BASH = shutil.which("bash") or "/bin/bash"
#: The first line of the TOML block that is the console blocks' configuration.
CONFIG_HEADING = "# /etc/mailstrom/mailstrom.toml"
#: The directories the console blocks name, each moved into the test's own.
SYSTEM_PATHS = (
    "/etc/mailstrom/",
    "/var/lib/mailstrom/",
    "/usr/sbin/",
    "/usr/local/bin/",
)
#: The message id the console blocks' queue commands name; the test queues it.
EXAMPLE_ID = "3f2a9c@app.example.org"


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


def console_blocks() -> list[list[str]]:
    """Each console block of the README as its commands, continued lines joined."""
    blocks = []
    for indent, body in CONSOLE_BLOCK.findall(README.read_text(encoding="utf-8")):
        commands, current = [], ""
        for line in body.splitlines():
            text = line[len(indent) + 4 :]
            if text.endswith("\\"):
                current += text[:-1]
                continue
            if (current + text).strip():
                commands.append((current + text).strip())
            current = ""
        blocks.append(commands)
    return blocks


def runs_the_command_line(block: list[str]) -> bool:
    return any("mailstrom-py" in command or "sendmail" in command for command in block)


def test_the_readme_has_command_line_examples() -> None:
    """The README shows commands; the console blocks that do not run are the
    ones that run Python (pip, pytest, the demo and the benchmarks)."""
    blocks = console_blocks()
    assert sum(map(runs_the_command_line, blocks)) >= 5
    for block in blocks:
        if not runs_the_command_line(block):
            assert all(command.startswith("python") for command in block), block


def readme_environment(root: Path, port: int) -> dict[str, str]:
    """Set up the README's system paths under ``root``: its configuration
    file relaying to 127.0.0.1:``port``, and the console script as
    /usr/local/bin/mailstrom-py. Returns the environment to run commands in."""
    for path in SYSTEM_PATHS:
        (root / path.strip("/")).mkdir(parents=True)
    [config] = [b for b in toml_blocks() if b.startswith(CONFIG_HEADING)]
    assert f"port = {README_PORT}\n" in config
    config = localised(
        config.replace(f"port = {README_PORT}\n", f"port = {port}\n"), root
    )
    config_file = root / "etc/mailstrom/mailstrom.toml"
    config_file.write_text(config, encoding="utf-8")
    script = root / "usr/local/bin/mailstrom-py"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom mailstrom_py.cli import main\n"
        "sys.exit(main())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    path = f"{root}/usr/local/bin:{root}/usr/sbin:" + child_env()["PATH"]
    return {"PATH": path, "MAILSTROM_CONFIG": str(config_file)}


def localised(text: str, root: Path) -> str:
    """``text`` with each of the system paths moved under ``root``."""
    for path in SYSTEM_PATHS:
        text = text.replace(path, f"{root}{path}")
    return text


def start_dashboard(
    args: list[str], env: dict[str, str], cwd: Path, port: int
) -> Daemon:
    """Start the README's dashboard command on ``port``; check it serves."""
    dashboard = Daemon(*args, "--listen", f"127.0.0.1:{port}", env=env, cwd=cwd)
    dashboard.start()
    dashboard.wait_for_line(f"serving http://127.0.0.1:{port}/")
    url = f"http://127.0.0.1:{port}/api/overview"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert "messages" in json.load(response)
    return dashboard


def test_readme_console_blocks_run(
    tmp_path: Path, smtp_server: SmtpServerFactory, free_port: int
) -> None:
    """Every console block with mailstrom-py or sendmail runs, command by command,
    each exiting 0; the worker one starts delivers what the others queue, and
    stops with 0 on SIGTERM."""
    server = smtp_server()
    env = readme_environment(tmp_path, server.port)
    example = f"Message-ID: <{EXAMPLE_ID}>\nFrom: app@example.org\nTo: bob@example.net\n\nhi\n"
    assert run("send", "-t", input=example.encode(), env=env).returncode == 0
    worker: Daemon | None = None
    dashboard: Daemon | None = None
    try:
        for block in filter(runs_the_command_line, console_blocks()):
            for shown in block:
                command = localised(shown, tmp_path)
                words = shlex.split(command)
                if words[:2] == ["mailstrom-py", "worker"]:
                    worker = Daemon(*words[1:], env=env, cwd=tmp_path).start()
                    worker.wait_for_line("delivering")
                    continue
                if words[:2] == ["mailstrom-py", "dashboard"]:
                    dashboard = start_dashboard(words[1:], env, tmp_path, free_port)
                    continue
                done = subprocess.run(
                    [BASH, "-o", "pipefail", "-c", command],
                    env=child_env(env),
                    cwd=tmp_path,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                assert done.returncode == 0, (
                    f"{command}\n{done.stdout!r}\n{done.stderr!r}"
                )
        assert worker is not None, "no console block starts the worker"
        deadline = time.monotonic() + 30
        while run("queue", "count", "--pending", env=env).stdout != b"0\n":
            assert time.monotonic() < deadline, worker.stderr
            time.sleep(0.2)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
        assert dashboard is not None, "no console block starts the dashboard"
        dashboard.signal(signal.SIGTERM)
        assert dashboard.wait() == 0, dashboard.stderr
    finally:
        for daemon in (worker, dashboard):
            if daemon is not None:
                daemon.__exit__(None, None, None)
    listed = json.loads(run("queue", "list", "--json", env=env).stdout)
    assert len(listed) >= 4
    assert all(r["result"] == "delivered" for m in listed for r in m["recipients"])
    assert len(server.handler.messages) == len(listed)


def test_the_systemd_unit_runs_the_documented_worker() -> None:
    """The README's unit is Type=notify, and its ExecStart is the worker
    command of its console block, from /usr/local/bin."""
    [unit] = [
        "\n".join(line[4:] for line in block.splitlines())
        for block in INI_BLOCK.findall(README.read_text(encoding="utf-8"))
    ]
    parser = configparser.ConfigParser()
    parser.read_string(unit)
    assert parser["Service"]["Type"] == "notify"
    program, *args = shlex.split(parser["Service"]["ExecStart"])
    assert program == "/usr/local/bin/mailstrom-py"
    workers = [
        shlex.split(command)[1:]
        for block in console_blocks()
        for command in block
        if command.startswith("mailstrom-py worker")
    ]
    assert workers == [args]


def test_the_django_settings_block_makes_a_working_backend(
    tmp_path: Path, smtp_server: SmtpServerFactory
) -> None:
    """The README's Django settings, as shown (their port aside), make
    send_mail() queue in their SQLite file, from which manage.py
    mailstrom_worker delivers."""
    pytest.importorskip("django")
    server = smtp_server()
    [index] = [i for i, b in enumerate(python_blocks()) if "EMAIL_BACKEND" in b]
    shown: dict[str, object] = {}
    exec(compiled(index, server.port), shown)  # noqa: S102
    settings = {name: value for name, value in shown.items() if name.isupper()}
    assert settings["EMAIL_BACKEND"] == "mailstrom_py.contrib.django.EmailBackend"
    assert "mailstrom_py.contrib.django" in settings["INSTALLED_APPS"]  # type: ignore[operator]
    sent = run_django(
        """
        from django.core.mail import send_mail
        print(send_mail("Hi", "Queued by Django.", "app@example.org",
                        ["alice@example.org"]))
        """,
        settings,
        cwd=tmp_path,
    )
    assert sent == 1
    assert (tmp_path / "outbox.db").exists()
    with worker_command(settings, cwd=tmp_path) as worker:
        [received] = server.handler.wait_for(1, timeout=30)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.stderr
    assert received.rcpt_tos == ("alice@example.org",)
