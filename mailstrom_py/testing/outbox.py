"""A mailer whose sent mail a test reads as a list (the mailstrom_outbox fixture)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import overload

from ..config import Config, RelayConfig
from ..core import Mailstrom
from ..errors import WorkerError
from ..status import DeliveryResult
from ..storage import Storage
from .clock import DEFAULT_START, FakeClock
from .sent import SentMessage
from .transport import RecordingTransport

__all__ = ["RecordingOutbox", "default_config"]

#: How long looking at the outbox waits for a started mailer to deliver.
WAIT_SECONDS = 10.0


def default_config() -> Config:
    """The configuration of a :class:`RecordingOutbox` given none.

    Its relay is never dialled (the outbox's transport records instead);
    ``mailer.test`` names the host in generated Message-IDs.
    """
    return Config(
        helo_name="mailer.test", delivery=RelayConfig("relay.test", tls="none")
    )


class RecordingOutbox(Sequence[SentMessage]):
    """A :class:`~mailstrom_py.Mailstrom` that records instead of sending, and
    the list of what it sent.

    Hand :attr:`mailer` to the code under test, then read the outbox as a list
    of :class:`~mailstrom_py.testing.SentMessage`. Looking at the outbox
    (``len()``, indexing, iterating, :attr:`messages`) first delivers every
    message that is due, in the calling thread, so mail sent a moment ago is
    there to see. Mail deferred by a scripted 4xx reply waits for the clock:
    ``outbox.clock.advance(...)`` and look again.

    Attributes:
        mailer: the mailer, not started; it delivers when the outbox is looked
            at. If the code under test starts it, looking waits (up to 10
            seconds) for its worker to deliver what is queued instead.
        transport: the :class:`RecordingTransport` it delivers through; script
            replies with ``transport.reply_to(...)``.
        clock: the :class:`FakeClock` it reads the time from.

    Args:
        config: the mailer's configuration (DKIM keys, retry policy...); its
            delivery settings are never used. :func:`default_config` by default.
        storage: where the mailer keeps messages; a new MemoryStorage by default.
        start: the time the clock starts at.
    """

    def __init__(
        self,
        config: Config | None = None,
        storage: Storage | None = None,
        *,
        start: float = DEFAULT_START,
    ) -> None:
        self.clock = FakeClock(start)
        self.transport = RecordingTransport()
        self.mailer = Mailstrom(
            config if config is not None else default_config(),
            storage,
            transport=self.transport,
            clock=self.clock,
            rng=random.Random(0),
        )

    def __repr__(self) -> str:
        return f"<RecordingOutbox: {len(self.transport.sent)} sent>"

    @property
    def messages(self) -> list[SentMessage]:
        """Deliver what is due, then return everything sent so far, oldest first."""
        self.deliver()
        return self.transport.sent

    def deliver(self) -> int:
        """Attempt every message due at the clock's time; return how many.

        With the mailer started by the code under test, wait instead for its
        worker to attempt the messages not attempted yet, and return 0.
        """
        try:
            return self.mailer.run_once()
        except WorkerError:
            self._wait_for_worker()
            return 0

    def clear(self) -> None:
        """Forget what was sent so far (as ``mail.outbox.clear()`` does in Django)."""
        self.transport.clear()

    def close(self) -> None:
        """Stop the mailer; the outbox can still be read."""
        self.mailer.stop()

    def __len__(self) -> int:
        return len(self.messages)

    @overload
    def __getitem__(self, index: int) -> SentMessage: ...

    @overload
    def __getitem__(self, index: slice) -> list[SentMessage]: ...

    def __getitem__(self, index: int | slice) -> SentMessage | list[SentMessage]:
        return self.messages[index]

    def __iter__(self) -> Iterator[SentMessage]:
        return iter(self.messages)

    def _wait_for_worker(self) -> None:
        for status in self.mailer.list_messages():
            if any(r.result is DeliveryResult.QUEUED for r in status.recipients):
                self.mailer.wait(status.message_id, WAIT_SECONDS)
