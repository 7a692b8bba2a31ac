"""The queue commands that change messages: kick, hold, release, schedule,
fail and drop, each printing the ids it changed and a count."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime

from ..config.settings import LoadedConfig
from ..core import Outbox
from ..storage import QueueFilter, Storage, queue_admin

__all__ = ["OpenQueue", "change"]

_PAST_TENSE = {
    "kick": "kicked",
    "hold": "held",
    "release": "released",
    "schedule": "scheduled",
    "fail": "failed",
    "drop": "dropped",
}


@dataclass(frozen=True)
class OpenQueue:
    """A queue opened for a command, and the configuration file it came from
    (None when it was named with ``--db``)."""

    storage: Storage
    loaded: LoadedConfig | None


def change(
    queue: OpenQueue,
    action: str,
    where: QueueFilter,
    now: float,
    at: datetime | None = None,
) -> None:
    """Do ``action`` to the messages ``where`` selects; print each id changed
    on standard output and how many on standard error.

    ``at`` is the time of ``schedule``. ``fail`` queues a delivery status
    notification to each sender when the configuration turns DSNs on; with
    ``--db`` there is no configuration, and it says that none was sent.
    """
    admin = queue_admin(queue.storage)
    if action == "schedule":
        if at is None:
            raise ValueError("schedule needs a time")
        changed = admin.schedule(where, max(at.timestamp(), now), now)
    elif action == "fail":
        changed = _fail(queue, where, now)
    else:
        operations = {
            "kick": lambda: admin.kick(where, now),
            "hold": lambda: admin.hold(where),
            "release": lambda: admin.release(where),
            "drop": lambda: admin.drop(where),
        }
        changed = operations[action]()
    for message_id in changed:
        print(message_id)
    print(
        f"{_PAST_TENSE[action]} {len(changed)} message"
        + ("" if len(changed) == 1 else "s"),
        file=sys.stderr,
    )


def _fail(queue: OpenQueue, where: QueueFilter, now: float) -> list[str]:
    if queue.loaded is None:
        failed = [s.message_id for s in queue_admin(queue.storage).fail(where, now)]
        if failed:
            print(
                "no configuration (--db): no delivery status notification queued",
                file=sys.stderr,
            )
        return failed
    # Not closed here: the storage is the command's, closed when it ends.
    outbox = Outbox(queue.loaded.config, queue.storage, clock=lambda: now)
    return outbox.fail(where)
