"""Events for listeners, webhooks and metrics.

The event values are :mod:`mailstrom_py.event`; here they are dispatched to
listeners on a thread of their own (:class:`Dispatcher`).
"""

from __future__ import annotations

from .dispatch import CAPACITY, Dispatcher, Listener

__all__ = ["CAPACITY", "Dispatcher", "Listener"]
