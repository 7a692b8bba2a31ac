"""setup.cfg installs what the code imports: a plain install runs every feature.

Extras are only for optional integrations and the tools that test the
package. The checks read setup.cfg and the package's source (every import
statement, also those inside functions) and map each imported module to the
distribution that provides it with ``importlib.metadata``.
"""

from __future__ import annotations

import ast
import configparser
import sys
from collections.abc import Iterator
from functools import cache
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mailstrom_py"
#: The parts of the package that need more than a plain install, each with the
#: extra that supplies it (parts not written yet are checked once they exist).
OPTIONAL = {
    "testing": "test",
    "cli/demo.py": "demo",
    "storage/postgres": "postgres",
    "contrib/django": "django",
    "contrib/prometheus": "prometheus",
}


@cache
def setup_cfg() -> configparser.ConfigParser:
    # No interpolation: the dev extra names "%(test)s", which is read as text.
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser


def names(requirements: str) -> set[str]:
    """The distribution names in a setup.cfg list of requirements."""
    return {
        canonicalize_name(Requirement(line).name)
        for line in requirements.splitlines()
        if line.strip() and not line.lstrip().startswith("%(")
    }


def install_requires() -> set[str]:
    return names(setup_cfg()["options"]["install_requires"])


def extra(name: str) -> set[str]:
    return names(setup_cfg()["options.extras_require"][name])


def imported_modules(path: Path) -> Iterator[str]:
    """The top-level names of the absolute imports in one source file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0]


def third_party(path: Path) -> set[str]:
    """The modules a source file imports from outside the standard library."""
    return {
        module
        for module in imported_modules(path)
        if module not in sys.stdlib_module_names and module != "mailstrom_py"
    }


def providers(module: str) -> set[str]:
    """The installed distributions that provide top-level module ``module``."""
    return {canonicalize_name(d) for d in packages_distributions().get(module, [])}


def optional_part(path: Path) -> str | None:
    relative = path.relative_to(PACKAGE).as_posix()
    for part, extra_name in OPTIONAL.items():
        if relative == part or relative.startswith(part + "/"):
            return extra_name
    return None


def test_every_library_the_package_imports_is_installed_with_it() -> None:
    """Each third-party module imported outside the optional parts comes from a
    distribution in install_requires."""
    required = install_requires()
    missing = [
        f"{path.relative_to(ROOT)} imports {module} ({providers(module) or 'unknown'})"
        for path in sorted(PACKAGE.rglob("*.py"))
        if optional_part(path) is None
        for module in sorted(third_party(path))
        if not providers(module) & required
    ]
    assert missing == []


def test_optional_parts_import_only_what_their_extra_adds() -> None:
    """The testing kit, the demo and the integrations import nothing that
    install_requires and their own extra leave out."""
    required = install_requires()
    missing = [
        f"{path.relative_to(ROOT)} imports {module}: add it to [{name}]"
        for path in sorted(PACKAGE.rglob("*.py"))
        if (name := optional_part(path)) is not None
        for module in sorted(third_party(path))
        if not providers(module) & (required | extra(name))
    ]
    assert missing == []


def test_the_scan_sees_imports_made_inside_functions() -> None:
    """The checks above see libraries imported where they are used, so a
    deferred import cannot hide a dependency from them."""
    assert "dkim" in third_party(PACKAGE / "message" / "dkim.py")
    assert "dns" in third_party(PACKAGE / "delivery" / "routing" / "mx.py")
    assert "aiosmtpd" in third_party(PACKAGE / "cli" / "demo.py")


def test_ed25519_dkim_signing_needs_no_extra() -> None:
    """What dkimpy's own "ed25519" extra asks for (PyNaCl) is in install_requires,
    so Ed25519 signing and key generation work after a plain install."""
    ed25519 = {
        canonicalize_name(req.name)
        for req in map(Requirement, requires("dkimpy") or [])
        if req.marker is not None and req.marker.evaluate({"extra": "ed25519"})
    }
    assert ed25519
    assert ed25519 <= install_requires()
    assert "pynacl" not in extra("test")
