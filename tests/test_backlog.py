"""The hand-off of due messages to the delivery threads."""

from __future__ import annotations

import threading

from mailstrom_py.worker.backlog import Backlog


def test_ids_come_out_oldest_first() -> None:
    backlog = Backlog(takers=1, batch=10, limit=100)
    for n in range(3):
        assert backlog.offer(f"m{n}")
    assert backlog.take() == ["m0", "m1", "m2"]


def test_an_id_is_never_in_the_backlog_twice_until_finished() -> None:
    backlog = Backlog(takers=1, batch=10, limit=100)
    assert backlog.offer("m")
    assert not backlog.offer("m")  # waiting
    assert backlog.take() == ["m"]
    assert not backlog.offer("m")  # being attempted
    assert "m" in backlog
    backlog.finish(["m"])
    assert "m" not in backlog
    assert backlog.offer("m")


def test_a_batch_is_at_most_an_even_share_of_what_waits() -> None:
    backlog = Backlog(takers=4, batch=16, limit=1000)
    for n in range(6):
        backlog.offer(f"m{n}")
    # Six waiting among four takers: two each, so no thread sits idle while
    # another works through a queue of its own.
    assert len(backlog.take() or []) == 2
    for n in range(6, 200):
        backlog.offer(f"m{n}")
    assert len(backlog.take() or []) == 16


def test_offers_beyond_the_limit_are_refused() -> None:
    backlog = Backlog(takers=1, batch=1, limit=2)
    assert backlog.offer("a")
    assert backlog.offer("b")
    assert not backlog.offer("c")
    assert backlog.waiting() == 2


def test_take_waits_for_an_offer() -> None:
    backlog = Backlog(takers=1, batch=1, limit=10)
    taken: list[list[str] | None] = []
    taker = threading.Thread(target=lambda: taken.append(backlog.take()))
    taker.start()
    backlog.offer("late")
    taker.join(10)
    assert taken == [["late"]]


def test_close_returns_what_was_waiting_and_refuses_more() -> None:
    backlog = Backlog(takers=1, batch=1, limit=10)
    for name in ("x", "y", "z"):
        backlog.offer(name)
    assert backlog.close() == ["x", "y", "z"]
    assert "x" not in backlog
    assert not backlog.offer("w")
    assert backlog.take() is None


def test_close_wakes_a_waiting_taker() -> None:
    backlog = Backlog(takers=1, batch=1, limit=10)
    taken: list[list[str] | None] = [["not yet"]]
    taker = threading.Thread(target=lambda: taken.append(backlog.take()))
    taker.start()
    taker.join(0.05)
    backlog.close()
    taker.join(10)
    assert not taker.is_alive()
    assert taken[-1] is None
