"""Claim tokens: each differs from every other, whatever the threads, and a
forked worker process does not repeat its parent's."""

from __future__ import annotations

import os
import threading

from mailstrom_py.storage.base import new_token


def test_tokens_from_many_threads_are_all_different() -> None:
    """8 threads drawing 5,000 tokens each get 40,000 different tokens."""
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(mine: list[str]) -> None:
        mine.extend(new_token() for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(d,)) for d in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [token for mine in drawn for token in mine]
    assert len(set(every)) == len(every) == 40_000


def test_a_forked_child_draws_tokens_of_its_own() -> None:
    """A child forked after the parent drew tokens draws none the parent
    draws after the fork (nor any it drew before)."""
    before = [new_token() for _ in range(10)]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, " ".join(new_token() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    after = [new_token() for _ in range(10)]
    assert len(child) == 10
    assert not set(child) & set(before + after)
    assert child[0][:16] != after[0][:16]
