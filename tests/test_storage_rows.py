"""The row values the SQL backends write, computed without building statuses."""

from __future__ import annotations

import pytest

from mailstrom_py.status import RecipientStatus, Remote
from mailstrom_py.storage.query import fold_case
from mailstrom_py.storage.rows import (
    RECIPIENT_COLUMNS,
    queued_values,
    recipient_values,
)


@pytest.mark.parametrize("due", [0.0, 1_700_000_000.25])
def test_a_new_recipients_values_are_those_of_its_status(due: float) -> None:
    """queued_values(due) gives the recipient columns of a recipient just
    added, exactly as recipient_values() gives them for its status."""
    status = RecipientStatus("someone@example.test", next_attempt_at=due)
    assert queued_values(due) == recipient_values(status)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Example.TEST", "example.test"),
        ("ÄRGER@Example.TEST", "Ärger@example.test"),  # only ASCII letters fold
        ("İ.EXAMPLE", "İ.example"),  # str.lower() would give 'i̇'
        ("ẞ@X", "ẞ@x"),
    ],
)
def test_fold_case_lowers_ascii_letters_only(text: str, folded: str) -> None:
    """fold_case lowers A-Z and nothing else, as SQLite's NOCASE does, whether
    the text is ASCII or not."""
    assert fold_case(text) == folded


def test_policy_strings_are_a_json_array_and_null_when_none() -> None:
    """A session's policy strings go into remote_tls_policy_strings as one
    compact JSON array (any text, UTF-8 as is), NULL when there are none."""
    column = RECIPIENT_COLUMNS.index("remote_tls_policy_strings")
    remote = Remote("mx.d.test", "192.0.2.1", 25, tls_policy_strings=("a b", 'ë"\\'))
    status = RecipientStatus("someone@example.test", remote=remote)
    assert recipient_values(status)[column] == '["a b","ë\\"\\\\"]'
    plain = RecipientStatus("someone@example.test", remote=Remote("mx", "::1", 25))
    assert recipient_values(plain)[column] is None
