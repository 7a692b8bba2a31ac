"""AsyncOutbox: the Outbox's calls as coroutines, for asyncio applications.

Storing a message is quick but not free of waiting: SQLite syncs the file to
disk before ``send_email()`` returns, and a coroutine that waited so would
stop its whole event loop meanwhile. :class:`AsyncOutbox` runs each call on a
small thread pool of its own and awaits the result, so the loop goes on.

It wraps an Outbox rather than adding coroutines to it: an Outbox promises to
start no thread, and the pool is this wrapper's; and an object whose every
call is awaitable leaves no blocking call within reach of a coroutine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.message import EmailMessage, Message
from types import TracebackType
from typing import Self, TypeVar

from ..errors import MailerClosedError
from ..status import MessageStatus
from .aio_admin import AsyncAdmin
from .outbox import Outbox, attempted

__all__ = ["AsyncOutbox"]

T = TypeVar("T")

# wait() reads the status after 10 ms, then ever less often, up to every
# 200 ms, as Outbox.wait() does without a worker; each read is a call on the
# pool, so a wait holds no thread between reads.
_POLL_FIRST = 0.01
_POLL_MOST = 0.2


class AsyncOutbox(AsyncAdmin):
    """Send and wait from coroutines without blocking the event loop.

    Each call runs the matching call of ``outbox`` (an
    :class:`~mailstrom_py.Outbox` or a :class:`~mailstrom_py.Mailstrom`) on a
    thread pool of this object's own, started on first use. Use it as an
    async context manager, which enters ``outbox`` (starting a Mailstrom's
    worker) and closes it on leaving, or call :meth:`aclose`.

    Besides sending and waiting it has the Outbox's queue operations
    (``list_messages``, ``kick``, ``hold``, ``schedule``, ``fail``, ``drop``...)
    and controls (``suppress``, ``suspend``...) as coroutines.

    Cancelling an awaiting coroutine does not cancel the call under way: a
    cancelled ``send_email()`` may still have stored its message.

    Args:
        outbox: the outbox whose calls to run; it belongs to this object from
            now on, which closes it.
        threads: how many calls may run at once (at least 1). Writes to one
            storage take turns anyway, so a few suffice.
    """

    def __init__(self, outbox: Outbox, *, threads: int = 2) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads!r}")
        self._outbox = outbox
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="mailstrom-aio")
        self._closed = False

    @property
    def outbox(self) -> Outbox:
        """The outbox whose calls this object runs."""
        return self._outbox

    async def send_email(
        self,
        message: EmailMessage | Message | bytes | str,
        *,
        mail_from: str | None = None,
        rcpt_to: Sequence[str] | None = None,
        require_tls: bool = False,
        send_at: datetime | None = None,
    ) -> str:
        """Prepare and store a message as :meth:`Outbox.send_email` does (a
        ``send_at`` schedules it); return its id once it is stored.

        Raises:
            As :meth:`Outbox.send_email`: InvalidMessageError (nothing stored),
            DuplicateMessageError, StorageError, QueueFullError (nothing
            stored), MailerClosedError.
        """
        return await self._run(
            functools.partial(
                self._outbox.send_email,
                message,
                mail_from=mail_from,
                rcpt_to=rcpt_to,
                require_tls=require_tls,
                send_at=send_at,
            )
        )

    async def send_emails(
        self,
        messages: Iterable[EmailMessage | Message | bytes | str],
        *,
        send_at: datetime | None = None,
    ) -> list[str]:
        """Store many messages at once, all or none, as :meth:`Outbox.send_emails`."""
        batch = list(messages)
        return await self._run(
            functools.partial(self._outbox.send_emails, batch, send_at=send_at)
        )

    async def query_status(self, message_id: str) -> MessageStatus:
        """Return the delivery status of a message, as :meth:`Outbox.query_status`.

        Raises:
            MessageNotFound: the id is unknown.
        """
        return await self._run(functools.partial(self._outbox.query_status, message_id))

    async def wait(self, message_id: str, timeout: float = 30.0) -> MessageStatus:
        """Wait until every recipient of a message has an outcome from an attempt.

        Returns as :meth:`Outbox.wait` does: once no recipient is ``QUEUED``, or
        when ``timeout`` seconds have passed (check the status to tell which).
        It reads the status every 10 ms at first and every 200 ms at most,
        sleeping on the event loop in between.

        Raises:
            MessageNotFound: the id is unknown.
        """
        import asyncio  # noqa: PLC0415  (where it is used: see _in_pool)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pause = _POLL_FIRST
        while True:
            status = await self.query_status(message_id)
            left = deadline - loop.time()
            if attempted(status) or left <= 0:
                return status
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MOST)

    async def aclose(self) -> None:
        """Close the outbox (a Mailstrom stops as ``stop()`` says) and the pool.

        Calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self._in_pool(self._outbox.close)
        finally:
            # The pool's threads are idle now; they end without being joined.
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        try:
            await self._run(self._outbox.__enter__)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self, call: Callable[[], T]) -> T:
        if self._closed:
            raise MailerClosedError("this outbox has been closed")
        return await self._in_pool(call)

    async def _in_pool(self, call: Callable[[], T]) -> T:
        # asyncio is imported where it is used, as dnspython and dkimpy are, so
        # that `import mailstrom_py` does not load it for programs that never
        # await; it is in sys.modules already whenever a coroutine runs here.
        import asyncio  # noqa: PLC0415

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)
