"""The worker's timetable: when the delivery threads look in storage for due mail."""

from __future__ import annotations

import threading
import time

from mailstrom_py.testing import FakeClock
from mailstrom_py.worker.timetable import Look, Timetable


def looked_within(timetable: Timetable, seconds: float) -> float | None:
    """Wait up to ``seconds`` in another thread for a look; return its time."""
    result: list[Look | None] = []
    thread = threading.Thread(target=lambda: result.append(timetable.wait()))
    thread.daemon = True
    thread.start()
    thread.join(seconds)
    look = result[0] if result else None
    return None if look is None else look.now


def take(timetable: Timetable) -> Look:
    """Take a look that is due now."""
    look = timetable.wait()
    assert look is not None
    return look


def test_the_first_look_is_at_once_and_the_next_one_waits() -> None:
    """A new timetable gives a look at once; with nothing due, the next one waits
    for the interval."""
    clock = FakeClock(100.0)
    timetable = Timetable(clock, interval=30.0, takers=4, batch=16)
    assert take(timetable) == Look(100.0, share=16, expected=False)
    timetable.done()
    assert looked_within(timetable, 0.2) is None
    timetable.close()


def test_a_due_time_now_wakes_a_waiting_thread_at_once() -> None:
    """due(now) ends a wait long before the interval would."""
    timetable = Timetable(time.time, interval=30.0, takers=4, batch=16)
    timetable.wait()
    timetable.done()
    started = time.monotonic()
    threading.Timer(0.05, lambda: timetable.due(time.time())).start()
    assert looked_within(timetable, 5.0) is not None
    assert time.monotonic() - started < 1.0
    timetable.close()


def test_a_look_is_given_when_a_due_time_comes() -> None:
    """A due time in the future gives a look once the clock reaches it, and not
    before; the look takes it, so it wakes one thread only."""
    clock = FakeClock(100.0)
    timetable = Timetable(clock, interval=30.0, takers=4, batch=16)
    timetable.wait()
    timetable.done()
    timetable.due(105.0)
    assert looked_within(timetable, 0.2) is None
    clock.advance(5.0)
    assert take(timetable) == Look(105.0, share=16, expected=True)
    assert looked_within(timetable, 0.2) is None
    timetable.close()


def test_the_interval_brings_a_look_with_nothing_due() -> None:
    """Without any due time a look comes every interval: for mail stored by
    other processes."""
    clock = FakeClock(100.0)
    timetable = Timetable(clock, interval=30.0, takers=4, batch=16)
    timetable.wait()
    timetable.done()
    clock.advance(30.0)
    assert looked_within(timetable, 5.0) == 130.0
    timetable.close()


def test_a_clock_set_back_does_not_put_looks_off() -> None:
    """A wall clock set back by more than the interval gives a look at once,
    rather than after the jump has been lived through again."""
    now = [1000.0]
    timetable = Timetable(lambda: now[0], interval=1.0, takers=4, batch=16)
    timetable.wait()
    timetable.done()
    now[0] = 1000.0 - 86400
    assert looked_within(timetable, 5.0) == now[0]
    timetable.close()


def test_close_ends_every_wait_and_looks_are_counted_until_done() -> None:
    """close() wakes the waiting threads with None; idle() is false between a
    look and its done()."""
    timetable = Timetable(time.time, interval=30.0, takers=4, batch=16)
    assert timetable.idle()
    timetable.wait()
    assert not timetable.idle()
    timetable.done()
    assert timetable.idle()
    waiters = [threading.Thread(target=timetable.wait) for _ in range(3)]
    for thread in waiters:
        thread.start()
    timetable.close()
    for thread in waiters:
        thread.join(5)
        assert not thread.is_alive()
    assert timetable.wait() is None


def test_a_burst_stored_here_is_shared_out_over_the_threads() -> None:
    """A look may take an even share of the messages stored here and not yet
    claimed, and another look follows at once while some are left."""
    clock = FakeClock(100.0)
    timetable = Timetable(clock, interval=30.0, takers=4, batch=16)
    for _ in range(6):
        timetable.stored(clock())
    first = take(timetable)
    assert first == Look(100.0, share=2, expected=True)
    timetable.claimed(first, 2)
    second = take(timetable)
    assert second.share == 1
    timetable.claimed(second, 1)
    for _ in range(100):
        timetable.stored(clock())
    assert take(timetable).share == 16
    timetable.close()


def test_a_look_that_finds_less_than_its_share_ends_the_burst() -> None:
    """Fewer claimed than the share means nothing more is due: no look follows
    at once, and the next is a whole batch."""
    clock = FakeClock(100.0)
    timetable = Timetable(clock, interval=30.0, takers=4, batch=16)
    for _ in range(8):
        timetable.stored(clock())
    look = take(timetable)
    timetable.claimed(look, 1)
    assert looked_within(timetable, 0.2) is None
    clock.advance(30.0)
    assert take(timetable).share == 16
    timetable.close()


def test_a_full_batch_of_mail_from_elsewhere_brings_another_look() -> None:
    """A look that claims a whole batch, with nothing stored here, lets another
    thread look at once: storage may hold more."""
    clock = FakeClock(100.0)
    timetable = Timetable(clock, interval=30.0, takers=4, batch=16)
    look = take(timetable)
    timetable.claimed(look, 16)
    assert take(timetable) == Look(100.0, share=16, expected=True)
    timetable.close()
