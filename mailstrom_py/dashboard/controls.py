"""The controls the dashboard shows and changes: destinations suspended, and
the suppression list, both kept in storage
(:class:`~mailstrom_py.storage.controls.Controls`) where every worker reads
them.

The actions are ``suspend`` (a destination, for some minutes), ``resume``,
``suppress`` (an address, for some days) and ``unsuppress``; each names its
one entry by field, never a pattern.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..storage.controls import (
    Controls,
    Suppression,
    Suspension,
    fold_address,
    fold_destination,
)

__all__ = [
    "CONTROL_ACTIONS",
    "ControlsView",
    "apply_control",
    "control_fields",
    "controls_json",
    "read_controls",
]

log = logging.getLogger(__name__)

#: The control actions, by the name their URL uses.
CONTROL_ACTIONS = ("suspend", "resume", "suppress", "unsuppress")

#: How long a suspension lasts when the form gives no minutes, and the most.
_SUSPEND_MINUTES, _MOST_MINUTES = 60.0, 7 * 24 * 60.0
#: How long a suppression lasts when the form gives no days, and the most.
_SUPPRESS_DAYS, _MOST_DAYS = 30.0, 3650.0


@dataclass(frozen=True)
class ControlsView:
    """The suspensions in force and the suppression list at ``now``, oldest
    first; ``kept`` is false when the storage keeps neither."""

    suspensions: tuple[Suspension, ...]
    suppressions: tuple[Suppression, ...]
    now: float
    kept: bool = True


def read_controls(controls: Controls | None, now: float) -> ControlsView:
    """What ``controls`` holds at ``now``; an empty view without any."""
    if controls is None:
        return ControlsView((), (), now, kept=False)
    return ControlsView(
        tuple(controls.suspensions(now)), tuple(controls.suppressions(now)), now
    )


def controls_json(view: ControlsView) -> dict[str, object]:
    """The view as JSON-ready values, times in seconds since the epoch."""
    return {
        "kept": view.kept,
        "suspensions": [dataclasses.asdict(s) for s in view.suspensions],
        "suppressions": [dataclasses.asdict(s) for s in view.suppressions],
    }


def control_fields(
    form: Mapping[str, Sequence[str]], body: bytes, json_body: bool
) -> dict[str, str]:
    """The fields of a control action: the last value of each form field, or
    the string and number members of a JSON object body (numbers as text).

    Raises:
        ValueError: a JSON body that is not an object of strings and numbers.
    """
    if not json_body:
        return {name: values[-1] for name, values in form.items() if values}
    try:
        given = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(given, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool)
        for v in given.values()
    ):
        raise ValueError("expected a JSON object of strings and numbers")
    return {str(k): str(v) for k, v in given.items()}


def apply_control(
    controls: Controls, action: str, fields: Mapping[str, str], now: float, who: str
) -> dict[str, object]:
    """Do ``action`` with ``fields``; log it at INFO with ``who`` did it; return
    what changed, JSON-ready: ``{"action": ..., "changed": bool}`` with the
    entry's fields.

    Fields: ``suspend`` takes ``destination``, ``minutes`` (60 by default, at
    most a week) and ``reason``; ``resume`` takes ``destination``; ``suppress``
    takes ``address``, ``days`` (30 by default, at most ten years) and
    ``reason``; ``unsuppress`` takes ``address``.

    Raises:
        ValueError: an unknown action, a field missing, or a value out of
            range (a ``ConfigError``, which is one, from the entry's checks).
    """
    reason = fields.get("reason", "").strip() or f"the dashboard, by {who}"
    if action == "suspend":
        minutes = _number(fields, "minutes", _SUSPEND_MINUTES, _MOST_MINUTES)
        name = _required(fields, "destination")
        suspension = Suspension.lasting(name, reason, now, minutes * 60)
        controls.suspend(suspension)
        result: dict[str, object] = {
            "destination": suspension.destination,
            "changed": True,
        }
    elif action == "resume":
        destination = fold_destination(_required(fields, "destination"))
        result = {"destination": destination, "changed": controls.resume(destination)}
    elif action == "suppress":
        days = _number(fields, "days", _SUPPRESS_DAYS, _MOST_DAYS)
        address = _required(fields, "address")
        suppression = Suppression.lasting(address, reason, now, days * 86400)
        controls.suppress([suppression])
        result = {"address": suppression.address, "changed": True}
    elif action == "unsuppress":
        address = fold_address(_required(fields, "address"))
        result = {"address": address, "changed": bool(controls.unsuppress([address]))}
    else:
        raise ValueError(
            f"unknown action {action!r}; one of {', '.join(CONTROL_ACTIONS)}"
        )
    log.info("dashboard %s by %s: %s", action, who, json.dumps(result))
    return {"action": action, **result}


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise ValueError(f"give the {name}")
    return value


def _number(fields: Mapping[str, str], name: str, default: float, most: float) -> float:
    text = fields.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= most:
        raise ValueError(f"{name} must be above 0 and at most {most:g}")
    return value
