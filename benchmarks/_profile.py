"""Where a run's CPU goes: cProfile in every thread, summed.

cProfile sees only the thread it was enabled in; here each thread started
while profiling enables a profiler of its own on its first event, and the
report sums them all. Each profiler counts its thread's CPU time, not wall
time, so that waiting (for a reply, for the GIL, for a lock) is not counted.
Profiling slows every Python call, small ones most, so the shares are a guide
to where the time goes, not the times themselves.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from types import FrameType

#: Areas a function's own time is summed into, by the first match in its file.
_AREAS = (
    ("smtplib", "smtplib"),
    ("socket/ssl", "socket"),
    ("sqlite3 (C calls)", "sqlite3"),
    ("mailstrom_py.message", "mailstrom_py/message"),
    ("mailstrom_py.storage", "mailstrom_py/storage"),
    ("mailstrom_py.delivery", "mailstrom_py/delivery"),
    ("mailstrom_py.worker", "mailstrom_py/worker"),
    ("mailstrom_py (other)", "mailstrom_py/"),
    ("email package", "email/"),
    ("threading/queue", "threading"),
    ("threading/queue", "queue.py"),
    ("benchmark", "benchmarks/"),
)


def _area(filename: str, name: str) -> str:
    where = f"{filename} {name}"
    for area, marker in _AREAS:
        if marker in where:
            return area
    return "other builtins" if filename == "~" else "other Python"


@contextlib.contextmanager
def profiled(top: int = 25) -> Iterator[None]:
    """Profile the body in this thread and every thread it starts; then print
    the own time summed by area, and the ``top`` functions by own time."""
    profiles = [cProfile.Profile(time.thread_time)]
    lock = threading.Lock()

    def enable(frame: FrameType, event: str, arg: object) -> None:
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    threading.setprofile(enable)
    profiles[0].enable()
    try:
        yield
    finally:
        profiles[0].disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        with lock:
            stats = pstats.Stats(*profiles)
        _print(stats, top)


def _print(stats: pstats.Stats, top: int) -> None:
    entries = stats.stats  # type: ignore[attr-defined]
    areas: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, own, _, _) in entries.items():
        areas[_area(filename, name)] += own
    total = sum(areas.values())
    print(f"own CPU time by area, of {total:.2f} s profiled:")
    for area, seconds in sorted(areas.items(), key=lambda kv: -kv[1]):
        print(f"  {area:<24} {seconds:7.2f} s  {seconds / total:6.1%}")
    print()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats("mailstrom_py", top)
