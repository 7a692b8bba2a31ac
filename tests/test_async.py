"""AsyncOutbox: sending and waiting from coroutines, with the event loop free
the whole time, even while SQLite syncs every message to disk."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.smtpd import SmtpServerFactory

from mailstrom_py import (
    AsyncOutbox,
    Config,
    DeliveryResult,
    InvalidMessageError,
    MailerClosedError,
    Mailstrom,
    MemoryStorage,
    MessageNotFound,
    Outbox,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
)

CONFIG = Config("app.example.org", RelayConfig("127.0.0.1", tls="none"))
TICK = 0.01


def message(number: int) -> bytes:
    return (
        f"From: app@example.org\r\nTo: user{number}@example.org\r\n"
        f"Subject: number {number}\r\n\r\nHello.\r\n"
    ).encode()


class Heartbeat:
    """A task that sleeps TICK seconds again and again, noting each wake-up."""

    def __init__(self) -> None:
        self.beats: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.beats.append(loop.time())
            await asyncio.sleep(TICK)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    def longest_gap(self) -> float:
        return max(b - a for a, b in zip(self.beats, self.beats[1:], strict=False))

    def between(self, start: float, end: float) -> int:
        return sum(start < beat < end for beat in self.beats)


def test_the_event_loop_keeps_ticking_while_200_messages_are_synced_to_disk(
    tmp_path: Path,
) -> None:
    """A heartbeat every 10 ms misses no beat by 50 ms while one coroutine
    stores 200 messages, one after another, in SQLite with synchronous=FULL;
    it beats all along the sending, and every message is stored."""

    async def main() -> tuple[Heartbeat, float, float, list[str]]:
        storage = SqliteStorage(tmp_path / "outbox.db", synchronous="FULL")
        async with AsyncOutbox(Outbox(CONFIG, storage)) as outbox:
            heartbeat = Heartbeat()
            heartbeat.start()
            await asyncio.sleep(5 * TICK)
            loop = asyncio.get_running_loop()
            started = loop.time()
            ids = [await outbox.send_email(message(n)) for n in range(200)]
            ended = loop.time()
            await asyncio.sleep(5 * TICK)
            await heartbeat.stop()
            assert outbox.outbox.count_messages() == 200
        return heartbeat, started, ended, ids

    heartbeat, started, ended, ids = asyncio.run(main())
    assert len(set(ids)) == 200
    assert heartbeat.longest_gap() < 0.05, heartbeat.longest_gap()
    # Had the sends blocked the loop, no beat would fall between them.
    assert heartbeat.between(started, ended) >= 2, ended - started


def test_a_batch_is_stored_all_or_none(tmp_path: Path) -> None:
    """send_emails() stores a good batch in order, and nothing of a batch with
    a bad message, whose InvalidMessageError says which."""

    async def main() -> tuple[list[str], int | None, int]:
        storage = SqliteStorage(tmp_path / "outbox.db", synchronous="FULL")
        async with AsyncOutbox(Outbox(CONFIG, storage)) as outbox:
            ids = await outbox.send_emails(message(n) for n in range(50))
            with pytest.raises(InvalidMessageError) as info:
                await outbox.send_emails([message(50), b"To: x\r\n\r\n"])
            return ids, info.value.index, outbox.outbox.count_messages()

    ids, index, stored = asyncio.run(main())
    assert len(set(ids)) == 50
    assert (index, stored) == (1, 50)


def test_wait_returns_once_a_mailstrom_has_delivered(
    smtp_server: SmtpServerFactory,
) -> None:
    """Entering the AsyncOutbox starts a Mailstrom's worker; wait() returns the
    delivered status, and leaving stops the worker."""
    server = smtp_server()
    config = Config(
        "app.example.org",
        RelayConfig(server.host, port=server.port, tls="none"),
    )
    mailer = Mailstrom(config)

    async def main() -> DeliveryResult:
        async with AsyncOutbox(mailer) as outbox:
            message_id = await outbox.send_email(message(1))
            status = await outbox.wait(message_id, timeout=20)
            return status.recipients[0].result

    assert asyncio.run(main()) is DeliveryResult.DELIVERED
    assert len(server.handler.messages) == 1
    assert mailer.closed


def test_wait_times_out_on_the_loop_with_the_message_still_queued() -> None:
    """With no worker, wait() returns the queued status after its timeout, and
    the loop beats all the while."""

    async def main() -> tuple[DeliveryResult, float, Heartbeat]:
        async with AsyncOutbox(Outbox(CONFIG, MemoryStorage())) as outbox:
            message_id = await outbox.send_email(message(1))
            heartbeat = Heartbeat()
            heartbeat.start()
            loop = asyncio.get_running_loop()
            started = loop.time()
            status = await outbox.wait(message_id, timeout=0.3)
            waited = loop.time() - started
            await heartbeat.stop()
            return status.recipients[0].result, waited, heartbeat

    result, waited, heartbeat = asyncio.run(main())
    assert result is DeliveryResult.QUEUED
    assert 0.3 <= waited < 2
    assert heartbeat.longest_gap() < 0.05


def test_errors_come_back_through_the_await() -> None:
    """A bad message raises InvalidMessageError and an unknown id
    MessageNotFound, from the await, and nothing is stored."""

    async def main() -> int:
        async with AsyncOutbox(Outbox(CONFIG, MemoryStorage())) as outbox:
            with pytest.raises(InvalidMessageError):
                await outbox.send_email(b"To: nobody\r\n\r\nhi\r\n")
            with pytest.raises(MessageNotFound):
                await outbox.query_status("no-such@id")
            return outbox.outbox.count_messages()

    assert asyncio.run(main()) == 0


def test_closing_closes_the_outbox_and_ends_the_pool() -> None:
    """After aclose() the outbox is closed, a send raises MailerClosedError,
    and the pool's threads end."""

    async def main() -> Outbox:
        outbox = AsyncOutbox(Outbox(CONFIG, MemoryStorage()))
        await outbox.send_email(message(1))
        await outbox.aclose()
        await outbox.aclose()
        with pytest.raises(MailerClosedError):
            await outbox.send_email(message(2))
        return outbox.outbox

    assert asyncio.run(main()).closed
    for thread in threading.enumerate():
        if thread.name.startswith("mailstrom-aio"):
            thread.join(5)
            assert not thread.is_alive()


def test_the_queue_operations_and_controls_are_awaitable(tmp_path: Path) -> None:
    """Each queue operation and control of the Outbox has a coroutine of the
    same name that does the same to the same storage: hold, release, schedule,
    kick, fail, drop, listing and counting; suppressing and suspending."""

    async def main() -> None:
        inner = Outbox(CONFIG, SqliteStorage(tmp_path / "q.db"))
        async with AsyncOutbox(inner) as outbox:
            ids = [await outbox.send_email(message(n)) for n in range(4)]
            one = QueueFilter(ids=(ids[0],))
            assert await outbox.hold(one) == [ids[0]]
            assert await outbox.count_messages(QueueFilter(held=True)) == 1
            assert await outbox.release(one) == [ids[0]]
            later = datetime.now(UTC) + timedelta(hours=1)
            assert await outbox.schedule(one, later) == [ids[0]]
            [status] = await outbox.list_messages(one)
            assert status.next_attempt_at is not None
            assert abs(status.next_attempt_at - later.timestamp()) < 1
            assert await outbox.kick(one) == [ids[0]]
            assert await outbox.fail(QueueFilter(ids=(ids[1],))) == [ids[1]]
            [failed] = (await outbox.query_status(ids[1])).recipients
            assert failed.result is DeliveryResult.FAILED
            assert await outbox.drop(QueueFilter(ids=(ids[2],))) == [ids[2]]
            assert await outbox.count_messages() == 3
            assert len(await outbox.list_messages(limit=2)) == 2
            assert {s.message_id for s in await outbox.query_recent()} <= set(ids)

            entry = await outbox.suppress("User0@Example.org", reason="bounced")
            assert entry.address == "user0@example.org"
            assert [s.address for s in await outbox.suppressions()] == [entry.address]
            assert inner.suppressions() == await outbox.suppressions()
            assert await outbox.unsuppress("user0@example.org")
            assert not await outbox.unsuppress("user0@example.org")

            await outbox.suspend("Example.org", 60, reason="asked to")
            assert [s.destination for s in await outbox.suspensions()] == [
                "example.org"
            ]
            assert await outbox.resume("example.org")
            assert await outbox.suspensions() == []

    asyncio.run(main())
