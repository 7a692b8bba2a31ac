"""Helpers for testing code that uses mailstrom_py, and for testing new backends.

For code that sends mail: :class:`~.outbox.RecordingOutbox` (the
``mailstrom_outbox`` fixture of the pytest plugin, :mod:`.plugin`) is a mailer
whose sent mail reads like a list of :class:`~.sent.SentMessage`; it is built
from a :class:`~.transport.RecordingTransport`, which records instead of
sending and answers recipients as scripted, and a :class:`~.clock.FakeClock`,
which moves only when told, to step through retries without sleeping.

For storage backends: :func:`~.emails.prepared_email` builds a
:class:`~mailstrom_py.PreparedEmail` directly; :class:`~.backends.AbstractOnly`
is a backend with only the abstract methods of :class:`~mailstrom_py.Storage`.
The storage contract suite, :mod:`mailstrom_py.testing.contract`, and the
plugin need pytest and are imported on their own: importing this package does
not import pytest.
"""

from __future__ import annotations

from .backends import AbstractOnly
from .clock import FakeClock
from .emails import prepared_email
from .outbox import RecordingOutbox, default_config
from .sent import SentMessage
from .transport import RecordingTransport

__all__ = [
    "AbstractOnly",
    "FakeClock",
    "RecordingOutbox",
    "RecordingTransport",
    "SentMessage",
    "default_config",
    "prepared_email",
]
