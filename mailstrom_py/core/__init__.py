"""The producer and the facade: :class:`Outbox` prepares, stores and notifies;
:class:`Mailstrom` is an Outbox with a worker of its own."""

from __future__ import annotations

from .mailer import Mailstrom
from .outbox import Clock, Notify, Outbox

__all__ = ["Clock", "Mailstrom", "Notify", "Outbox"]
