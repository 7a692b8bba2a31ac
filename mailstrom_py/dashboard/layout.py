"""The frame every page shares, and the small pieces of HTML the pages use.

Every value from the queue (an address, a subject, a server's reply) goes
through :func:`esc`, so it is shown as text and can never become markup.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from ..status import RecipientStatus, SmtpReply
from .jsonview import timestamp

__all__ = [
    "Viewer",
    "action_form",
    "ago",
    "esc",
    "message_link",
    "message_path",
    "outcome",
    "page",
    "query_string",
    "reply_html",
    "state_badge",
    "when",
]

_NAV = (
    ("/", "Overview"),
    ("/destinations", "Destinations"),
    ("/messages", "Messages"),
    ("/controls", "Controls"),
)


@dataclass(frozen=True)
class Viewer:
    """Who is looking, as far as the page cares.

    Attributes:
        read_only: the dashboard offers no action.
        logged_in: the request carries the token (its login cookie).
        csrf: the value forms send back with an action, when logged in.
        path: the page's own path and query, where an action returns to.
    """

    read_only: bool
    logged_in: bool
    csrf: str | None
    path: str

    @property
    def can_act(self) -> bool:
        return self.logged_in and not self.read_only and self.csrf is not None


def esc(value: object) -> str:
    """``value`` as HTML text, quotes escaped too (safe in an attribute)."""
    return html.escape(str(value), quote=True)


def query_string(params: dict[str, str]) -> str:
    return "?" + urlencode(params) if params else ""


def message_path(message_id: str) -> str:
    """The path of a message's page; the id is percent-encoded."""
    return "/messages/" + quote(message_id, safe="@")


def message_link(message_id: str) -> str:
    return f'<a href="{esc(message_path(message_id))}">{esc(message_id)}</a>'


def ago(seconds: float) -> str:
    """A span as ``45s``, ``12m``, ``2h5m`` or ``3d4h``."""
    left = max(0, int(seconds))
    if left < 60:
        return f"{left}s"
    if left < 3600:
        return f"{left // 60}m"
    if left < 86400:
        hours, minutes = divmod(left // 60, 60)
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(left // 3600, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def when(moment: float | None, now: float) -> str:
    """A ``<time>`` element: relative to ``now``, the UTC time as its title."""
    if moment is None:
        return '<span class="none">—</span>'
    stamp = timestamp(moment) or ""
    text = f"{ago(now - moment)} ago" if moment <= now else f"in {ago(moment - now)}"
    return f'<time datetime="{esc(stamp)}" title="{esc(stamp)}">{esc(text)}</time>'


def reply_html(reply: SmtpReply | None) -> str:
    """A server's reply, with the step of the conversation it answered."""
    if reply is None:
        return ""
    step = "" if reply.step is None else f' <span class="step">{esc(reply.step)}</span>'
    return f"<code>{esc(reply)}</code>{step}"


def outcome(r: RecipientStatus) -> str:
    """What became of a recipient's last attempt: the reply, else the detail."""
    if r.last_reply is not None:
        return reply_html(r.last_reply)
    words = " ".join(p for p in (r.status_code, r.detail) if p)
    return f"<code>{esc(words)}</code>" if words else ""


def state_badge(state: str) -> str:
    return f'<span class="state state-{esc(state)}">{esc(state)}</span>'


# What the page asks before an action that cannot be undone.
_CONFIRM = {
    "drop": "Drop this message for good, telling no one?",
    "fail": "Fail this message now? Its sender gets a report when DSNs are on.",
}


def action_form(
    viewer: Viewer, action: str, ids: tuple[str, ...], label: str | None = None
) -> str:
    """A button that POSTs ``action`` for ``ids``; nothing when ``viewer``
    cannot act."""
    if not viewer.can_act or viewer.csrf is None:
        return ""
    hidden = "".join(f'<input type="hidden" name="id" value="{esc(i)}">' for i in ids)
    question = _CONFIRM.get(action)
    confirm = f' data-confirm="{esc(question)}"' if question else ""
    return (
        f'<form class="action" method="post" action="/actions/{esc(action)}"{confirm}>'
        f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
        f'<input type="hidden" name="back" value="{esc(viewer.path)}">{hidden}'
        f'<button type="submit" name="do" value="{esc(action)}"'
        f' class="button-{esc(action)}">{esc(label or action.title())}</button>'
        "</form>"
    )


def page(title: str, body: str, viewer: Viewer, *, refresh: bool = False) -> bytes:
    """A whole page: the head, the navigation, ``body`` (HTML already), UTF-8."""
    nav = "".join(
        f'<a href="{path}"{" aria-current=page" if _current(path, viewer) else ""}>'
        f"{name}</a>"
        for path, name in _NAV
    )
    account = '<span class="badge">read-only</span>' if viewer.read_only else ""
    if viewer.logged_in and viewer.csrf is not None:
        account += (
            '<form class="action" method="post" action="/logout">'
            f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
            '<button type="submit">Log out</button></form>'
        )
    elif not viewer.logged_in:
        account += f'<a href="/login{query_string({"back": viewer.path})}">Log in</a>'
    meta = '<meta http-equiv="refresh" content="30">' if refresh else ""
    text = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{esc(title)} · mailstrom_py</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script>'
        "</head><body>"
        f'<header><span class="brand">mailstrom_py</span><nav>{nav}</nav>'
        f'<span class="account">{account}</span></header>'
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>\n"
    )
    return text.encode("utf-8")


def _current(path: str, viewer: Viewer) -> bool:
    here = viewer.path.partition("?")[0]
    return here == path or (path != "/" and here.startswith(path + "/"))
