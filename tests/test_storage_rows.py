"""The row values the SQL backends write, computed without building statuses."""

from __future__ import annotations

import pytest

from mailstrom_py.status import RecipientStatus
from mailstrom_py.storage.query import fold_case
from mailstrom_py.storage.rows import queued_values, recipient_values


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
