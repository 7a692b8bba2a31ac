"""The queue operations and controls of an Outbox as coroutines: the half of
:class:`~mailstrom_py.AsyncOutbox` that administers rather than sends.

Each coroutine runs the Outbox call of the same name on the AsyncOutbox's
thread pool, with the same arguments, results and exceptions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from ..status import MessageStatus
from ..storage.controls import Suppression, Suspension
from ..storage.query import QueueFilter
from .outbox import Outbox

__all__ = ["AsyncAdmin"]

T = TypeVar("T")


class AsyncAdmin:
    """Queue operations, suppression and suspension, awaitable; mixed into
    :class:`~mailstrom_py.AsyncOutbox`, which runs the calls."""

    _outbox: Outbox

    async def _run(self, call: Callable[[], T]) -> T:
        raise NotImplementedError

    async def list_messages(
        self, where: QueueFilter | None = None, *, limit: int | None = None
    ) -> list[MessageStatus]:
        """As :meth:`Outbox.list_messages`: the selected messages, oldest first."""
        return await self._run(
            functools.partial(self._outbox.list_messages, where, limit=limit)
        )

    async def count_messages(self, where: QueueFilter | None = None) -> int:
        """As :meth:`Outbox.count_messages`."""
        return await self._run(functools.partial(self._outbox.count_messages, where))

    async def kick(self, where: QueueFilter) -> list[str]:
        """As :meth:`Outbox.kick`: the selected messages are due now."""
        return await self._run(functools.partial(self._outbox.kick, where))

    async def hold(self, where: QueueFilter) -> list[str]:
        """As :meth:`Outbox.hold`."""
        return await self._run(functools.partial(self._outbox.hold, where))

    async def release(self, where: QueueFilter) -> list[str]:
        """As :meth:`Outbox.release`."""
        return await self._run(functools.partial(self._outbox.release, where))

    async def schedule(self, where: QueueFilter, at: datetime) -> list[str]:
        """As :meth:`Outbox.schedule`: the selected messages are due at ``at``.

        Raises:
            InvalidMessageError: as :meth:`Outbox.schedule`.
        """
        return await self._run(functools.partial(self._outbox.schedule, where, at))

    async def fail(self, where: QueueFilter) -> list[str]:
        """As :meth:`Outbox.fail`: the selected pending recipients fail now."""
        return await self._run(functools.partial(self._outbox.fail, where))

    async def drop(self, where: QueueFilter) -> list[str]:
        """As :meth:`Outbox.drop`."""
        return await self._run(functools.partial(self._outbox.drop, where))

    async def query_recent(self, limit: int | None = None) -> list[MessageStatus]:
        """As :meth:`Outbox.query_recent`."""
        return await self._run(functools.partial(self._outbox.query_recent, limit))

    async def suppress(
        self,
        address: str,
        *,
        reason: str = "a command",
        duration: float | None = None,
    ) -> Suppression:
        """As :meth:`Outbox.suppress`.

        Raises:
            ConfigError: as :meth:`Outbox.suppress`.
        """
        return await self._run(
            functools.partial(
                self._outbox.suppress, address, reason=reason, duration=duration
            )
        )

    async def unsuppress(self, address: str) -> bool:
        """As :meth:`Outbox.unsuppress`."""
        return await self._run(functools.partial(self._outbox.unsuppress, address))

    async def suppressions(self) -> list[Suppression]:
        """As :meth:`Outbox.suppressions`."""
        return await self._run(self._outbox.suppressions)

    async def suspend(
        self, destination: str, duration: float, *, reason: str = "a command"
    ) -> Suspension:
        """As :meth:`Outbox.suspend`.

        Raises:
            ConfigError: as :meth:`Outbox.suspend`.
        """
        return await self._run(
            functools.partial(
                self._outbox.suspend, destination, duration, reason=reason
            )
        )

    async def resume(self, destination: str) -> bool:
        """As :meth:`Outbox.resume`."""
        return await self._run(functools.partial(self._outbox.resume, destination))

    async def suspensions(self) -> list[Suspension]:
        """As :meth:`Outbox.suspensions`."""
        return await self._run(self._outbox.suspensions)
