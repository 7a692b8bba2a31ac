"""The producer and the facade: :class:`Outbox` prepares, stores and notifies;
:class:`Mailstrom` is an Outbox with a worker of its own; :class:`AsyncOutbox`
runs either's calls for asyncio code."""

from __future__ import annotations

from .aio import AsyncOutbox
from .mailer import Mailstrom
from .outbox import Clock, Notify, Outbox

__all__ = ["AsyncOutbox", "Clock", "Mailstrom", "Notify", "Outbox"]
