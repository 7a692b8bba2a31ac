"""The actions the dashboard offers on messages: kick, hold, release, fail,
drop.

Each acts on the messages named by id, never on a filter: an empty list of
ids is refused (the empty :class:`~mailstrom_py.QueueFilter` would select the
whole queue).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence

from ..storage import QueueFilter
from .source import QueueSource

__all__ = ["ACTIONS", "MAX_IDS", "Fail", "apply_action", "ids_from"]

log = logging.getLogger(__name__)

#: The actions, by the name their URL uses.
ACTIONS = ("kick", "hold", "release", "fail", "drop")

#: Fails the messages a filter selects and returns their ids, telling their
#: senders as it sees fit (``Outbox.fail``, which queues DSNs when they are on).
Fail = Callable[[QueueFilter], list[str]]
#: The most messages one action names.
MAX_IDS = 1000


def ids_from(
    form: Mapping[str, Sequence[str]], body: bytes, json_body: bool
) -> tuple[str, ...]:
    """Return the message ids an action names: the ``id`` form fields, or the
    ``ids`` list of a JSON body; each less the angle brackets of a pasted
    Message-ID, duplicates dropped.

    Raises:
        ValueError: no id, too many, or a JSON body that is not
            ``{"ids": [strings]}``.
    """
    if json_body:
        try:
            given = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the body is not JSON: {exc}") from None
        raw = given.get("ids") if isinstance(given, dict) else None
        if not isinstance(raw, list) or not all(isinstance(i, str) for i in raw):
            raise ValueError('expected a JSON body {"ids": ["message id", ...]}')
    else:
        raw = list(form.get("id", ()))
    ids = tuple(
        dict.fromkeys(
            i.strip().removeprefix("<").removesuffix(">") for i in raw if i.strip()
        )
    )
    if not ids:
        raise ValueError("name at least one message id")
    if len(ids) > MAX_IDS:
        raise ValueError(f"name at most {MAX_IDS} message ids at once")
    return ids


def apply_action(
    queue: QueueSource,
    action: str,
    ids: tuple[str, ...],
    now: float,
    who: str,
    *,
    fail: Fail | None = None,
) -> list[str]:
    """Do ``action`` to the messages ``ids``; log it at INFO with ``who`` did
    it; return the ids it changed.

    ``fail`` does the "fail" action when given; otherwise the queue's own
    ``fail``, which tells no one.

    Raises:
        ValueError: ``action`` is not one of :data:`ACTIONS`, or ``ids`` is empty.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    if not ids:
        raise ValueError("name at least one message id")
    where = QueueFilter(ids=ids)
    if action == "kick":
        changed = queue.kick(where, now)
    elif action == "hold":
        changed = queue.hold(where)
    elif action == "release":
        changed = queue.release(where)
    elif action == "fail":
        if fail is not None:
            changed = fail(where)
        else:
            changed = [s.message_id for s in queue.fail(where, now)]
    else:
        changed = queue.drop(where)
    log.info(
        "dashboard %s by %s: %d of %d named changed %s",
        action,
        who,
        len(changed),
        len(ids),
        json.dumps(changed),
    )
    return changed
