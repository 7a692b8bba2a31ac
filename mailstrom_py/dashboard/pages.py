"""The overview, destinations, login and error pages, as HTML."""

from __future__ import annotations

from ..status import RecipientStatus
from .chart import chart_svg
from .facts import STATES, Destination
from .layout import (
    Viewer,
    ago,
    esc,
    message_link,
    outcome,
    page,
    query_string,
    state_badge,
    when,
)
from .views import DestinationsView, Options, Overview

__all__ = ["destinations_page", "error_page", "login_page", "overview_page"]


def overview_page(view: Overview, viewer: Viewer, options: Options) -> bytes:
    counts = view.counts.as_dict()
    tiles = "".join(
        f'<a class="tile tile-{state}" href="/messages?state={state}">'
        f'<span class="count">{counts[state]}</span>{state_badge(state)}</a>'
        for state in STATES
    )
    oldest = view.oldest
    if oldest is None:
        pending = "<p>Nothing is waiting to be delivered.</p>"
    else:
        pending = (
            f"<p>Queue depth <strong>{view.counts.depth}</strong>; the oldest"
            f" message waiting is {message_link(oldest.message_id)}, created"
            f" {when(oldest.created_at, view.now)}.</p>"
        )
    totals = view.timeline.totals()
    hours = options.chart_hours
    chart = (
        f"<h2>Recipients per minute, last {esc(_hours(hours))}</h2>"
        + '<p class="legend">'
        + "".join(
            f'<span class="key key-{n}"></span>{esc(n)} {totals[n]} '
            for n in ("delivered", "deferred", "failed")
        )
        + "</p>"
        + chart_svg(view.timeline)
        + '<p class="note">Each recipient counts once, at the start of its last'
        " attempt, with its result now: storage keeps only the last attempt,"
        " so a recipient deferred and later delivered shows as delivered."
        f" Derived from {view.scanned} messages (those of the last"
        f" {esc(_hours(options.lookback / 3600))} and every pending one)"
        + (
            f"; <strong>partial</strong>: more than {options.budget} messages."
            if view.timeline.partial
            else "."
        )
        + "</p>"
    )
    failures = (
        "".join(
            f"<tr><td>{when(f.recipient.last_attempt_at, view.now)}</td>"
            f"<td>{esc(f.recipient.address)}</td><td>{message_link(f.message_id)}</td>"
            f"<td>{outcome(f.recipient)}</td></tr>"
            for f in view.failures
        )
        or '<tr><td colspan="4" class="none">No recipient failed in the last'
        " hour.</td></tr>"
    )
    body = (
        f'<section class="tiles">{tiles}</section>{pending}{chart}'
        "<h2>Failed in the last hour</h2>"
        "<table><thead><tr><th>When</th><th>Recipient</th><th>Message</th>"
        f"<th>Reply</th></tr></thead><tbody>{failures}</tbody></table>"
    )
    return page("Overview", body, viewer, refresh=True)


def _hours(hours: float) -> str:
    return ago(hours * 3600)


def destinations_page(view: DestinationsView, viewer: Viewer) -> bytes:
    since = f"since {when(view.since, view.now)}"
    parts = []
    if view.relay is not None:
        parts.append(
            f"<p>All mail goes through the relay <code>{esc(view.relay)}</code>;"
            " below it, the same recipients by domain.</p>"
        )
        parts.append(_table(view.destinations, view.now, since, "Relay"))
        parts.append("<h2>By recipient domain</h2>")
        parts.append(_table(view.domains, view.now, since, "Domain"))
    else:
        parts.append(_table(view.destinations, view.now, since, "Domain"))
    parts.append(
        f'<p class="note">Recipients of the {view.scanned} messages created'
        f" {since} and of every pending one"
        + ("; <strong>partial</strong>: not all were read." if view.partial else ".")
        + ' Suspended destinations are on the <a href="/controls">controls</a>'
        " page.</p>"
    )
    return page("Destinations", "".join(parts), viewer, refresh=True)


def _table(rows: tuple[Destination, ...], now: float, since: str, kind: str) -> str:
    head = (
        f"<table><thead><tr><th>{kind}</th><th>Pending</th><th>Deferred</th>"
        f"<th>Held</th><th>Delivered</th><th>Failed</th><th>Oldest pending</th>"
        "<th>Last reply</th><th>Last deferral or failure</th></tr></thead><tbody>"
    )
    body = "".join(_row(d, now, kind) for d in rows) or (
        f'<tr><td colspan="9" class="none">No recipient {since}.</td></tr>'
    )
    return head + body + "</tbody></table>"


def _row(d: Destination, now: float, kind: str) -> str:
    name = esc(d.name)
    if kind == "Domain":
        link = f"/messages{query_string({'domain': d.name, 'state': 'pending'})}"
        name = f'<a href="{esc(link)}">{name}</a>'
    trouble = d.last_trouble
    return (
        f"<tr><td>{name}</td><td>{d.pending}</td>"
        f'<td class="{"warn" if d.deferred else ""}">{d.deferred}</td>'
        f"<td>{d.held}</td><td>{d.delivered}</td>"
        f'<td class="{"bad" if d.failed else ""}">{d.failed}</td>'
        f"<td>{when(d.oldest_pending_at, now)}</td>"
        f"<td>{_last(d.last, now)}</td><td>{_last(trouble, now)}</td></tr>"
    )


def _last(r: RecipientStatus | None, now: float) -> str:
    if r is None:
        return ""
    return f"{outcome(r)} <small>{esc(r.result)} {when(r.last_attempt_at, now)}</small>"


def login_page(viewer: Viewer, back: str, error: str | None = None) -> bytes:
    problem = f'<p class="error">{esc(error)}</p>' if error else ""
    body = (
        f"{problem}<p>Actions need the token the dashboard printed when it"
        " started, or the one in its configuration file.</p>"
        '<form method="post" action="/login" class="login">'
        f'<input type="hidden" name="back" value="{esc(back)}">'
        '<label>Token <input type="password" name="token" id="token"'
        ' autocomplete="current-password" required></label>'
        '<button type="submit">Log in</button></form>'
    )
    return page("Log in", body, viewer)


def error_page(viewer: Viewer, title: str, text: str) -> bytes:
    return page(title, f'<p class="error">{esc(text)}</p>', viewer)
