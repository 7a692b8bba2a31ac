"""Helpers for testing code that uses mailstrom_py, and for testing new backends.

:func:`~.emails.prepared_email` builds a :class:`~mailstrom_py.PreparedEmail`
directly; :class:`~.backends.AbstractOnly` is a backend with only the abstract
methods of :class:`~mailstrom_py.Storage`. The storage contract suite,
:mod:`mailstrom_py.testing.contract`, needs pytest and is imported on its own:
importing this package does not import pytest.
"""

from __future__ import annotations

from .backends import AbstractOnly
from .emails import prepared_email

__all__ = ["AbstractOnly", "prepared_email"]
