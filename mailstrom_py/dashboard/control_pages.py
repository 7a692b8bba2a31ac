"""The controls page, as HTML: destinations suspended and the suppression
list, each entry with its button to end it, and forms to add one."""

from __future__ import annotations

from .controls import ControlsView
from .layout import Viewer, esc, page, when

__all__ = ["controls_page"]


def controls_page(view: ControlsView, viewer: Viewer) -> bytes:
    if not view.kept:
        body = (
            '<p class="note">This storage keeps no suppression list and no'
            " suspensions: each worker keeps its own, in memory.</p>"
        )
        return page("Controls", body, viewer)
    suspended = (
        "".join(
            f"<tr><td>{esc(s.destination)}</td><td>{esc(s.reason)}</td>"
            f"<td>{when(s.since, view.now)}</td><td>{when(s.until, view.now)}</td>"
            f"<td>{_button(viewer, 'resume', 'destination', s.destination)}</td></tr>"
            for s in view.suspensions
        )
        or '<tr><td colspan="5" class="none">No destination is suspended.</td></tr>'
    )
    suppressed = (
        "".join(
            f"<tr><td>{esc(s.address)}</td><td>{esc(s.reason)}</td>"
            f"<td>{when(s.since, view.now)}</td><td>{when(s.until, view.now)}</td>"
            f"<td>{_button(viewer, 'unsuppress', 'address', s.address)}</td></tr>"
            for s in view.suppressions
        )
        or '<tr><td colspan="5" class="none">No address is suppressed.</td></tr>'
    )
    body = (
        "<h2>Suspended destinations</h2>"
        "<p>Mail to a suspended destination waits, deferred without its"
        " attempts counted, until the suspension ends; every worker sees a"
        " change within a second.</p>"
        "<table><thead><tr><th>Destination</th><th>Reason</th><th>Since</th>"
        f"<th>Until</th><th></th></tr></thead><tbody>{suspended}</tbody></table>"
        + _form(
            viewer,
            "suspend",
            '<label>Destination <input name="destination" required'
            ' placeholder="example.org, gmail, relay"></label>'
            '<label>Minutes <input name="minutes" type="number" min="1"'
            ' value="60"></label>',
        )
        + "<h2>Suppression list</h2>"
        "<p>Mail to a suppressed address fails at once (5.7.1) until the entry"
        " ends or is removed.</p>"
        "<table><thead><tr><th>Address</th><th>Reason</th><th>Since</th>"
        f"<th>Until</th><th></th></tr></thead><tbody>{suppressed}</tbody></table>"
        + _form(
            viewer,
            "suppress",
            '<label>Address <input name="address" type="email" required></label>'
            '<label>Days <input name="days" type="number" min="1"'
            ' value="30"></label>',
        )
    )
    return page("Controls", body, viewer, refresh=True)


def _hidden(viewer: Viewer) -> str:
    return (
        f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
        f'<input type="hidden" name="back" value="{esc(viewer.path)}">'
    )


def _button(viewer: Viewer, action: str, field: str, value: str) -> str:
    """A button that POSTs ``action`` for one entry; nothing when ``viewer``
    cannot act."""
    if not viewer.can_act:
        return ""
    return (
        f'<form class="action" method="post" action="/actions/{action}">'
        f'{_hidden(viewer)}<input type="hidden" name="{field}" value="{esc(value)}">'
        f'<button type="submit" class="button-{action}">{action.title()}</button>'
        "</form>"
    )


def _form(viewer: Viewer, action: str, inputs: str) -> str:
    """A form that adds an entry with ``action``; nothing when ``viewer``
    cannot act."""
    if not viewer.can_act:
        return ""
    return (
        f'<form class="control" method="post" action="/actions/{action}">'
        f"{_hidden(viewer)}{inputs}"
        '<label>Reason <input name="reason" maxlength="200"></label>'
        f'<button type="submit" class="button-{action}">{action.title()}</button>'
        "</form>"
    )
