"""Helpers for testing code that uses mailstrom_py, and for testing new backends.

:func:`~.emails.prepared_email` builds a :class:`~mailstrom_py.PreparedEmail`
directly. The storage contract suite, :mod:`mailstrom_py.testing.contract`,
needs pytest and is imported on its own: importing this package does not import
pytest.
"""

from __future__ import annotations

from .emails import prepared_email

__all__ = ["prepared_email"]
