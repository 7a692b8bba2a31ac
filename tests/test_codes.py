"""The named enhanced status codes (RFC 3463) the library records."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mailstrom_py import codes

_CODE = re.compile(r"[245]\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})")
_NAMES = [name for name in codes.__all__ if name.isupper()]


def test_the_codes_module_imports_nothing_from_the_package() -> None:
    """codes is a leaf: any module, however low, may import it."""
    tree = ast.parse(Path(codes.__file__).read_text(encoding="utf-8"))
    imported = [
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.level > 0 or (node.module or "").startswith("mailstrom_py"))
    ]
    assert imported == []


@pytest.mark.parametrize("name", _NAMES)
def test_each_name_is_a_well_formed_code_of_the_class_it_names(name: str) -> None:
    """Every code is class.subject.detail (RFC 3463 §2); a name saying TRANSIENT,
    PERMANENT or SUCCESS holds a code of that class."""
    code = getattr(codes, name)
    assert _CODE.fullmatch(code), code
    for word, klass in (("TRANSIENT", "4"), ("PERMANENT", "5"), ("SUCCESS", "2")):
        if name.endswith(word):
            assert code[0] == klass


def test_each_code_has_one_name() -> None:
    """No two names stand for the same code."""
    values = [getattr(codes, name) for name in _NAMES]
    assert len(set(values)) == len(values)


def test_the_transient_form_keeps_subject_and_detail() -> None:
    """transient() moves a code to class 4 and leaves the rest of it alone."""
    assert codes.transient("5.1.10") == "4.1.10"
    assert codes.transient(codes.BAD_CONNECTION) == codes.BAD_CONNECTION
