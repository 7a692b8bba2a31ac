"""pytest fixtures for testing code that sends mail with mailstrom_py.

Installed with the package as the pytest plugin ``mailstrom_py`` (an entry
point in the ``pytest11`` group), so the fixtures are there in every test
session; ``-p no:mailstrom_py`` turns it off. It adds fixtures and nothing
else: no hook, no option. At start-up pytest imports this module, and with it
mailstrom_py, which loads none of its heavy libraries (DNS, DKIM) until used.

- ``mailstrom_outbox``: a :class:`~mailstrom_py.testing.RecordingOutbox`, a
  mailer (``mailstrom_outbox.mailer``) that records instead of sending, read
  as the list of what it sent. It is stopped when the test ends.
- ``mailstrom_config``: the :class:`~mailstrom_py.Config` that mailer is
  built with. Override it in a ``conftest.py`` to test with your own (DKIM
  keys, a retry policy, your host name).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..config import Config
from .outbox import RecordingOutbox, default_config

__all__ = ["mailstrom_config", "mailstrom_outbox"]


@pytest.fixture
def mailstrom_config() -> Config:
    """The configuration ``mailstrom_outbox`` builds its mailer with."""
    return default_config()


@pytest.fixture
def mailstrom_outbox(mailstrom_config: Config) -> Iterator[RecordingOutbox]:
    """A mailer that records what it sends, read as a list of sent messages."""
    outbox = RecordingOutbox(mailstrom_config)
    yield outbox
    outbox.close()
