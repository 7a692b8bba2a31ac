"""The background worker: when attempts run, who runs them, what one does.

:mod:`.scheduler` runs the delivery threads, which claim due mail from storage
when :mod:`.timetable` says to look, and :mod:`.attempts` delivers what they
claimed, records and reports. The worker is the one part that knows both storage and
delivery.
"""

from __future__ import annotations

from .scheduler import Clock, Worker

__all__ = ["Clock", "Worker"]
