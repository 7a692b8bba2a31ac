"""Turns at the writer: callers' writes before background work, for a while."""

from __future__ import annotations

import threading
import time

import pytest

from mailstrom_py.storage.sqlite.turns import WriterTurns


def take_turn(turns: WriterTurns, name: str, order: list[str], *, urgent: bool) -> None:
    turns.acquire(urgent=urgent)
    order.append(name)
    turns.release()


def waiting(turns: WriterTurns, count: int) -> None:
    deadline = time.monotonic() + 10
    while turns.queued < count:
        assert time.monotonic() < deadline, "the waiters never queued up"
        time.sleep(0.001)


@pytest.mark.parametrize(
    ("patience", "expected"),
    [(60.0, ["caller", "background"]), (0.0, ["background", "caller"])],
)
def test_a_caller_goes_before_background_work_until_its_patience_is_spent(
    patience: float, expected: list[str]
) -> None:
    """A caller's write that comes after background work goes first while the
    background work's patience lasts, and after it once that is spent."""
    turns = WriterTurns(patience)
    order: list[str] = []
    turns.acquire(urgent=True)
    background = threading.Thread(
        target=take_turn, args=(turns, "background", order), kwargs={"urgent": False}
    )
    background.start()
    waiting(turns, 1)
    caller = threading.Thread(
        target=take_turn, args=(turns, "caller", order), kwargs={"urgent": True}
    )
    caller.start()
    waiting(turns, 2)
    assert turns.urgent == 1
    turns.release()
    for thread in (background, caller):
        thread.join(10)
    assert order == expected
    assert turns.queued == 0


def test_writers_of_one_kind_take_turns_in_the_order_they_came() -> None:
    """Waiters of one kind are served first come, first served, and the lock is
    free again once the last has had its turn."""
    turns = WriterTurns(60.0)
    order: list[str] = []
    turns.acquire(urgent=False)
    threads = []
    for n in range(4):
        thread = threading.Thread(
            target=take_turn, args=(turns, f"w{n}", order), kwargs={"urgent": True}
        )
        thread.start()
        threads.append(thread)
        waiting(turns, n + 1)
    turns.release()
    for thread in threads:
        thread.join(10)
    assert order == ["w0", "w1", "w2", "w3"]
    done = threading.Event()
    threading.Thread(
        target=lambda: (turns.acquire(urgent=False), done.set(), turns.release())
    ).start()
    assert done.wait(5), "the lock was not free after the last turn"
