"""The background worker: when attempts run, who runs them, what one does.

:mod:`.scheduler` keeps the timetable and the delivery threads, :mod:`.backlog`
hands due messages to those threads, and :mod:`.attempts` claims, delivers,
records and reports. The worker is the one part that knows both storage and
delivery.
"""

from __future__ import annotations

from .scheduler import Clock, Worker

__all__ = ["Clock", "Worker"]
