"""FilePolicyStore: cached MTA-STS policies in a JSON file, across restarts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mailstrom_py.delivery.routing.mta_sts import (
    CachedPolicy,
    FilePolicyStore,
    StsMode,
    StsPolicy,
)

ENTRY = CachedPolicy(
    "d.test", "1", StsPolicy(StsMode.ENFORCE, ("mx.d.test",), 86400), 1_700_000_000.0
)


def test_a_stored_policy_is_read_back_by_a_new_store(tmp_path: Path) -> None:
    """What one store put, a store opened later on the same file gets, and
    no temporary file is left beside it."""
    path = tmp_path / "sts.json"
    FilePolicyStore(path).put("d.test", ENTRY.to_json())
    again = FilePolicyStore(path)
    text = again.get("d.test")
    assert text is not None and CachedPolicy.from_json(text) == ENTRY
    assert again.get("other.test") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sts.json"]


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"d.test": 5}'])
def test_an_unreadable_file_is_an_empty_cache(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not a JSON object of strings is logged and treated as
    holding nothing; the next put replaces it."""
    path = tmp_path / "sts.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        store = FilePolicyStore(path)
    assert store.get("d.test") is None
    if content != '{"d.test": 5}':
        assert "ignoring the MTA-STS cache" in caplog.text
    store.put("d.test", ENTRY.to_json())
    assert FilePolicyStore(path).get("d.test") == ENTRY.to_json()


def test_a_store_that_cannot_write_keeps_its_policies_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing directory: put logs a warning and the policy stays served
    from memory; nothing is raised into delivery."""
    store = FilePolicyStore(tmp_path / "missing" / "sts.json")
    with caplog.at_level(logging.WARNING):
        store.put("d.test", ENTRY.to_json())
    assert store.get("d.test") == ENTRY.to_json()
    assert "cannot write the MTA-STS cache" in caplog.text
