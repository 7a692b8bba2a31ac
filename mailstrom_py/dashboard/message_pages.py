"""The message list and one message's page, as HTML."""

from __future__ import annotations

from ..status import MessageStatus, RecipientStatus, Remote
from .layout import (
    Viewer,
    action_form,
    esc,
    message_link,
    outcome,
    page,
    query_string,
    reply_html,
    state_badge,
    when,
)
from .messages import (
    LIST_STATES,
    SENDER_SCAN,
    MessageDetail,
    MessageList,
    MessageQuery,
    Row,
)

__all__ = ["message_page", "messages_page"]

_TEXT_FILTERS = (
    ("domain", "Domain", "example.net"),
    ("recipient", "Recipient", "alice@example.net"),
    ("sender", "Sender", "app@example.org"),
    ("older_than", "Older than", "1h"),
    ("newer_than", "Newer than", "15m"),
)


def messages_page(
    listing: MessageList, query: MessageQuery, viewer: Viewer, now: float
) -> bytes:
    shown = len(listing.rows)
    summary = f"{shown} of {listing.total} shown"
    note = (
        f'<p class="note">The state was matched among the first {SENDER_SCAN}'
        " messages the other filters select; narrow them to see the rest.</p>"
        if listing.partial
        else ""
    )
    rows = "".join(_list_row(row, now) for row in listing.rows) or (
        '<tr><td colspan="7" class="none">No message selected.</td></tr>'
    )
    body = (
        _filter_form(query)
        + f'<p class="summary">{esc(summary)}, oldest first.</p>{note}'
        '<table class="messages"><thead><tr><th>Message</th><th>Created</th>'
        "<th>Sender</th><th>Subject</th><th>State</th><th>Recipients</th>"
        f"<th>Last reply</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return page("Messages", body, viewer)


def _filter_form(query: MessageQuery) -> str:
    options = "".join(
        f'<option value="{esc(s)}"{" selected" if s == query.state else ""}>'
        f"{esc(s)}</option>"
        for s in LIST_STATES
    )
    fields = "".join(
        f'<label>{label} <input name="{name}" id="filter-{name}"'
        f' value="{esc(getattr(query, name) or "")}" placeholder="{esc(hint)}">'
        "</label>"
        for name, label, hint in _TEXT_FILTERS
    )
    return (
        '<form class="filters" method="get" action="/messages">'
        '<label>State <select name="state" id="filter-state">'
        f'<option value="">any</option>{options}</select></label>{fields}'
        f'<label>Limit <input name="limit" id="filter-limit" type="number" min="1"'
        f' max="1000" value="{query.limit}"></label>'
        '<button type="submit" id="filter-submit">Filter</button>'
        '<a href="/messages">Clear</a></form>'
    )


def _list_row(row: Row, now: float) -> str:
    status = row.status
    recipients = "<br>".join(
        f"{esc(r.address)} <small>{esc(r.result)}</small>" for r in status.recipients
    )
    latest = max(
        (r for r in status.recipients if r.last_attempt_at is not None),
        key=lambda r: r.last_attempt_at or 0.0,
        default=None,
    )
    return (
        f"<tr><td>{message_link(status.message_id)}</td>"
        f"<td>{when(status.created_at, now)}</td><td>{esc(row.sender or '<>')}</td>"
        f"<td>{esc(row.subject or '')}</td><td>{state_badge(row.state)}</td>"
        f"<td>{recipients}</td><td>{'' if latest is None else outcome(latest)}</td>"
        "</tr>"
    )


def message_page(
    detail: MessageDetail, viewer: Viewer, now: float, *, body_asked: bool
) -> bytes:
    status, email = detail.status, detail.email
    facts = [
        ("Id", esc(status.message_id)),
        ("State", state_badge(detail.state) + (" (held)" if status.held else "")),
        ("Created", when(status.created_at, now)),
        *_schedule_facts(status, now),
        ("Envelope sender", esc(email.mail_from or "<>")),
        ("From", esc(detail.from_ or "")),
        ("Subject", esc(detail.subject or "")),
        ("Size", f"{len(email.data)} bytes"),
        ("Next attempt", when(status.next_attempt_at, now)),
    ]
    flags = [
        name
        for name, on in (
            ("SMTPUTF8", email.smtputf8),
            ("8BITMIME", email.eight_bit),
            ("REQUIRETLS", email.require_tls),
            ("TLS-Required: No", email.tls_optional),
        )
        if on
    ]
    if flags:
        facts.append(("Needs", esc(", ".join(flags))))
    summary = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    recipients = "".join(_recipient_row(r, now) for r in status.recipients)
    body = (
        f'<dl class="facts">{summary}</dl>{_actions(detail, viewer)}'
        "<h2>Recipients</h2>"
        '<table class="recipients"><thead><tr><th>Recipient</th><th>Result</th>'
        "<th>Attempts</th><th>Last attempt</th><th>Next attempt</th>"
        "<th>Last reply</th><th>RCPT reply</th><th>Outcome</th><th>Server</th>"
        f"</tr></thead><tbody>{recipients}</tbody></table>"
        f'<h2>Header</h2><pre class="header">{esc(detail.header)}</pre>'
        + _body(detail, viewer, body_asked)
    )
    return page("Message", body, viewer)


def _actions(detail: MessageDetail, viewer: Viewer) -> str:
    if viewer.read_only:
        return ""
    if not viewer.can_act:
        link = f"/login{query_string({'back': viewer.path})}"
        return f'<p class="actions"><a href="{esc(link)}">Log in</a> to act on it.</p>'
    status = detail.status
    ids = (status.message_id,)
    buttons = []
    if not status.completed:
        buttons.append(action_form(viewer, "kick", ids, "Kick (due now)"))
        if status.held:
            buttons.append(action_form(viewer, "release", ids))
        else:
            buttons.append(action_form(viewer, "hold", ids))
        buttons.append(action_form(viewer, "fail", ids, "Fail (tell the sender)"))
    buttons.append(action_form(viewer, "drop", ids))
    return f'<div class="actions">{"".join(buttons)}</div>'


def _recipient_row(r: RecipientStatus, now: float) -> str:
    words = " ".join(p for p in (r.status_code, r.detail) if p)
    if r.possibly_delivered:
        words += " (possibly delivered: the connection was lost after the dot)"
    return (
        f"<tr><td>{esc(r.address)}</td><td>{state_badge(r.result)}</td>"
        f"<td>{r.attempts}</td><td>{when(r.last_attempt_at, now)}</td>"
        f"<td>{'' if r.completed else when(r.next_attempt_at, now)}</td>"
        f"<td>{reply_html(r.last_reply)}</td><td>{reply_html(r.rcpt_reply)}</td>"
        f"<td>{esc(words)}</td><td>{_remote(r.remote)}</td></tr>"
    )


def _remote(remote: Remote | None) -> str:
    if remote is None:
        return ""
    tls = remote.tls_version or "plaintext"
    if remote.tls_version:
        tls += ", verified" if remote.tls_verified else ", not verified"
    if remote.tls_policy is not None:
        tls += f", policy {remote.tls_policy} of {remote.tls_policy_domain}"
    if remote.tls_failure:
        tls += f", {remote.tls_result}: {remote.tls_failure}"
    return (
        f"{esc(remote.host)} <small>{esc(remote.address)}:{remote.port}"
        f" ({esc(tls)})</small>"
    )


def _body(detail: MessageDetail, viewer: Viewer, asked: bool) -> str:
    if detail.body is not None:
        cut = (
            '<p class="note">Only the beginning of the body is shown.</p>'
            if detail.body_truncated
            else ""
        )
        return f'<h2>Body</h2>{cut}<pre class="body">{esc(detail.body)}</pre>'
    here = viewer.path.partition("?")[0]
    if asked:
        link = f"/login{query_string({'back': here + '?body=1'})}"
        return f'<h2>Body</h2><p><a href="{esc(link)}">Log in</a> to see the body.</p>'
    return f'<p><a href="{esc(here)}?body=1">Show the body</a></p>'


def _schedule_facts(status: MessageStatus, now: float) -> list[tuple[str, str]]:
    """When the message was first due and since when its retries count (the
    retry policy's ``max_age``), each only when it is not its creation time."""
    facts: list[tuple[str, str]] = []
    first = status.first_due_at
    if first is not None and first != status.created_at:
        facts.append(("First due", when(first, now)))
    if status.retry_since != status.created_at:
        facts.append(("Retries count from", when(status.retry_since, now)))
    return facts
