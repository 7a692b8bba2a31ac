"""Events for listeners, webhooks and metrics.

The event values are :mod:`mailstrom_py.event`; here they are dispatched to
listeners on a thread of their own (:class:`Dispatcher`), counted
(:class:`Metrics`) and posted to a webhook from the storage's journal
(:class:`WebhookSender`).
"""

from __future__ import annotations

from .dispatch import CAPACITY, BatchObserver, Dispatcher, Listener, Observer
from .hub import EventHub, watch_queue
from .metrics import Metrics, Sample
from .webhook import WebhookSender

__all__ = [
    "CAPACITY",
    "BatchObserver",
    "Dispatcher",
    "EventHub",
    "Listener",
    "Metrics",
    "Observer",
    "Sample",
    "WebhookSender",
    "watch_queue",
]
