"""The queue dashboard over HTTP: every page and its JSON, with and without the
token, the actions and what guards them (CSRF, host names, read-only), and
hostile message content shown as text.

The queue is a real SQLite file whose messages a real mailer delivered to a
loopback SMTP server (one delivered, one deferred with 450, one failed with
550); the dashboard is the real server on a free loopback port, spoken to with
urllib.
"""

from __future__ import annotations

import configparser
import dataclasses
import fnmatch
import json
import logging
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from support import webdriver
from support.cli import ROOT, Daemon, config_text, run
from support.scripted import free_port as pick_free_port
from support.smtpd import SmtpServer, SmtpServerFactory

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    Outbox,
    PostgresStorage,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
    Storage,
)
from mailstrom_py.dashboard import (
    Dashboard,
    DashboardServer,
    Guard,
    Options,
    dashboard_hosts,
)
from mailstrom_py.storage.controls import Suppression, Suspension
from mailstrom_py.testing import prepared_email

TOKEN = "the-dashboard-test-token"
HOSTILE_SUBJECT = "<script>alert('subject')</script>"
HOSTILE_NAME = "<img src=x onerror=alert(1)>"


@dataclass(frozen=True)
class Queue:
    """The seeded queue: its file and the ids of its messages by role."""

    db: Path
    delivered: str
    deferred: str
    failed: str
    hostile: str
    held: str
    relay: str


def seed(db: Path, server: SmtpServer) -> Queue:
    """An SQLite queue seeded by :func:`seed_into`."""
    ids = seed_into(SqliteStorage(db), server)
    return Queue(db, *ids, f"127.0.0.1:{server.port}")


def seed_into(storage: Storage, server: SmtpServer) -> tuple[str, ...]:
    """Deliver three messages through a real mailer over ``storage`` (closed
    after), then queue two more (one with a hostile Subject and From, one
    held); return the ids: delivered, deferred, failed, hostile, held."""
    config = Config(
        helo_name="app.example.org",
        delivery=RelayConfig(host="127.0.0.1", port=server.port, tls="none"),
    )
    mailer = Mailstrom(config, storage)
    try:
        ids = [
            mailer.send_email(
                f"From: app@example.org\r\nTo: {to}\r\nSubject: about {to}\r\n"
                "\r\nThe body of the message.\r\n".encode()
            )
            for to in ("alice@example.org", "t4bob@example.net", "p5carol@example.com")
        ]
        assert mailer.run_once() == 3
        hostile = mailer.send_email(
            f'From: "{HOSTILE_NAME}" <mallory@example.org>\r\n'
            f"To: dave@example.org\r\nSubject: {HOSTILE_SUBJECT}\r\n\r\n"
            "<b>not bold</b>\r\n".encode()
        )
        held = mailer.send_email(
            b"From: app@example.org\r\nTo: erin@example.org\r\nSubject: wait\r\n"
            b"\r\nlater\r\n"
        )
        assert mailer.hold(QueueFilter(ids=(held,))) == [held]
    finally:
        mailer.stop(drain=0)
    return (*ids, hostile, held)


@pytest.fixture
def queue(tmp_path: Path, smtp_server: SmtpServerFactory) -> Queue:
    return seed(tmp_path / "outbox.db", smtp_server())


@dataclass
class Served:
    """A dashboard server running in a thread, and its storage."""

    server: DashboardServer
    storage: SqliteStorage | PostgresStorage
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return self.server.url.rstrip("/")

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()
        self.storage.close()


def serve(queue: Queue, dsn: bool = False, **options: object) -> Served:
    """Serve the queue; with ``dsn``, the fail action queues reports as an
    Outbox configured with DSNs does (as the command line's dashboard)."""
    storage = SqliteStorage(queue.db)
    reporting = Config(
        helo_name="app.example.org",
        delivery=RelayConfig(host="127.0.0.1", tls="none"),
        dsn=True,
    )
    app = Dashboard(
        storage,
        Guard(TOKEN, dashboard_hosts("127.0.0.1")),
        Options(**{"relay": queue.relay, **options}),  # type: ignore[arg-type]
        fail=Outbox(reporting, storage).fail if dsn else None,
        controls=storage,
    )
    return Served(DashboardServer(("127.0.0.1", 0), app), storage)


@pytest.fixture
def pick_port() -> int:
    """A second free loopback port."""
    return pick_free_port()


@pytest.fixture
def dashboard(queue: Queue) -> Iterator[Served]:
    served = serve(queue)
    yield served
    served.close()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http(
    url: str,
    *,
    data: bytes | dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> Answer:
    """One request; any status is returned, none raised; redirects not followed."""
    body: bytes | None
    sent = dict(headers or {})
    if isinstance(data, dict):
        body = urlencode(data, doseq=True).encode()
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    else:
        body = data
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, data=body, headers=sent, method=method)  # noqa: S310
    try:
        with _OPENER.open(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, dict(error.headers), error.read())


def same_origin(served: Served) -> dict[str, str]:
    return {"Origin": served.base}


def login(served: Served) -> str:
    """Log in through the form; return the cookie to send with later requests."""
    answer = http(
        served.base + "/login",
        data={"token": TOKEN, "back": "/"},
        headers=same_origin(served),
    )
    assert answer.status == 303
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    return cookie.partition(";")[0]


def csrf_of(page: str) -> str:
    marker = 'name="csrf" value="'
    assert marker in page, "the page has no form for actions"
    return page.split(marker, 1)[1].split('"', 1)[0]


def message_url(served: Served, message_id: str, api: bool = False) -> str:
    return (
        served.base
        + ("/api" if api else "")
        + "/messages/"
        + quote(message_id, safe="@")
    )


# -- reading --------------------------------------------------------------------------


def test_the_overview_counts_messages_by_state(dashboard: Served, queue: Queue) -> None:
    """/api/overview has one message in each state, the depth, the oldest pending
    message, the outcomes per minute and the recent failure with its reply."""
    overview = http(dashboard.base + "/api/overview").json()
    assert overview["messages"] == {
        "queued": 1,
        "deferred": 1,
        "held": 1,
        "delivered": 1,
        "failed": 1,
    }
    assert overview["depth"] == 3
    assert overview["oldest_pending"]["id"] == queue.deferred  # type: ignore[index]
    per_minute = overview["per_minute"]
    assert per_minute["totals"] == {"delivered": 1, "deferred": 1, "failed": 1}  # type: ignore[index]
    assert len(per_minute["minutes"]) == 180  # type: ignore[index]
    [failure] = overview["failed_last_hour"]  # type: ignore[misc]
    assert failure["message_id"] == queue.failed
    assert failure["last_reply"] == {
        "code": 550,
        "enhanced": "5.1.1",
        "text": "no such user",
        "step": "RCPT",
    }


def test_the_overview_page_shows_the_counts_and_the_chart(dashboard: Served) -> None:
    """The overview page is HTML with the state tiles, an SVG chart and the failure."""
    page = http(dashboard.base + "/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<svg class="chart"' in page.text
    assert 'class="bar-failed"' in page.text
    assert "p5carol@example.com" in page.text
    assert "no such user" in page.text


def test_the_destinations_show_the_relay_and_each_domain(
    dashboard: Served, queue: Queue
) -> None:
    """In relay mode the relay is the one destination; the domains follow, each
    with its counts and its last deferral or failure, with the SMTP step."""
    view = http(dashboard.base + "/api/destinations").json()
    assert view["relay"] == queue.relay
    [relay] = view["destinations"]  # type: ignore[misc]
    assert (relay["destination"], relay["pending"], relay["deferred"]) == (
        queue.relay,
        3,
        1,
    )
    assert (relay["delivered"], relay["failed"], relay["held"]) == (1, 1, 1)
    domains = {d["destination"]: d for d in view["domains"]}  # type: ignore[attr-defined]
    assert set(domains) == {"example.org", "example.net", "example.com"}
    net = domains["example.net"]
    assert (net["pending"], net["deferred"]) == (1, 1)
    assert net["last_trouble"]["last_reply"]["code"] == 450
    assert net["last_trouble"]["last_reply"]["step"] == "RCPT"
    assert domains["example.com"]["failed"] == 1
    page = http(dashboard.base + "/destinations").text
    assert "mailbox busy" in page and queue.relay in page


def test_the_chart_counts_each_recipient_in_the_minute_of_its_last_attempt(
    queue: Queue,
) -> None:
    """A recipient delivered 30 minutes ago counts in that minute; one delivered
    five hours ago is outside the three-hour chart."""
    storage = SqliteStorage(queue.db)
    now = time.time()
    try:
        for n, ago in ((1, 1800.0), (2, 5 * 3600.0)):
            storage.add(prepared_email(n), now - ago)
            [claim] = storage.claim_due(now - ago, 1, 60.0)
            assert claim.message_id == f"m{n}@example.test"
            delivered = dataclasses.replace(
                claim.status.recipients[0],
                result=DeliveryResult.DELIVERED,
                next_attempt_at=None,
            )
            assert storage.record(claim, [delivered]) is not None
    finally:
        storage.close()
    served = serve(queue)
    try:
        per_minute = http(served.base + "/api/overview").json()["per_minute"]
    finally:
        served.close()
    assert per_minute["totals"]["delivered"] == 2  # type: ignore[index]
    minute = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(now - 1800))
    [bucket] = [m for m in per_minute["minutes"] if m["start"] == minute]  # type: ignore[index]
    assert bucket["delivered"] == 1


def test_a_page_that_reads_past_its_budget_says_it_is_partial(queue: Queue) -> None:
    """With room for two messages, the chart and destinations say they are partial."""
    served = serve(queue, budget=2)
    try:
        overview = http(served.base + "/api/overview").json()
        assert overview["per_minute"]["partial"] is True  # type: ignore[index]
        assert overview["scanned"] == 2
        assert overview["messages"]["delivered"] == 1  # type: ignore[index]
        assert "<strong>partial</strong>" in http(served.base + "/").text
        assert http(served.base + "/api/destinations").json()["partial"] is True
    finally:
        served.close()


def test_direct_delivery_groups_destinations_by_domain(queue: Queue) -> None:
    """Without a relay the destinations are the recipient domains themselves."""
    served = serve(queue, relay=None)
    try:
        view = http(served.base + "/api/destinations").json()
    finally:
        served.close()
    assert view["relay"] is None and view["domains"] == []
    names = [d["destination"] for d in view["destinations"]]  # type: ignore[attr-defined]
    assert names[0] == "example.net"  # the deferring one first
    assert set(names) == {"example.org", "example.net", "example.com"}


@pytest.mark.parametrize(
    ("query", "roles"),
    [
        ("", ["delivered", "deferred", "failed", "hostile", "held"]),
        ("state=deferred", ["deferred"]),
        ("state=queued", ["hostile"]),
        ("state=held", ["held"]),
        ("state=delivered", ["delivered"]),
        ("state=failed", ["failed"]),
        ("state=pending", ["deferred", "hostile", "held"]),
        ("state=completed", ["delivered", "failed"]),
        ("domain=example.net", ["deferred"]),
        ("recipient=P5CAROL@example.com", ["failed"]),
        ("older_than=1h", []),
        ("newer_than=1h&state=failed", ["failed"]),
        ("limit=2", ["delivered", "deferred"]),
    ],
)
def test_the_message_list_filters(
    dashboard: Served, queue: Queue, query: str, roles: list[str]
) -> None:
    """/api/messages selects by state, domain, recipient, age and limit, oldest
    first, and counts the whole selection."""
    listing = http(dashboard.base + "/api/messages?" + query).json()
    ids = [m["id"] for m in listing["messages"]]  # type: ignore[attr-defined]
    assert ids == [getattr(queue, role) for role in roles]
    if query != "limit=2":
        assert listing["total"] == len(roles)
    assert listing["partial"] is False


def test_the_sender_is_matched_in_storage_and_counted(
    dashboard: Served, queue: Queue
) -> None:
    """The sender filter is the QueueFilter's: ASCII case aside, and counted."""
    listing = http(dashboard.base + "/api/messages?sender=Mallory@example.org").json()
    assert [m["id"] for m in listing["messages"]] == [queue.hostile]  # type: ignore[attr-defined]
    assert listing["total"] == 1
    assert listing["partial"] is False
    page = http(dashboard.base + "/messages?sender=mallory@example.org").text
    assert "1 of 1 shown" in page


@pytest.mark.parametrize(
    "query", ["state=lost", "older_than=soon", "limit=0", "limit=many", "limit=5000"]
)
def test_a_bad_filter_is_a_400(dashboard: Served, query: str) -> None:
    """A state, age or limit that is not one is refused with the reason."""
    api = http(dashboard.base + "/api/messages?" + query)
    assert api.status == 400
    assert api.json()["error"]
    assert http(dashboard.base + "/messages?" + query).status == 400


def test_a_message_page_shows_replies_with_their_step_and_the_header(
    dashboard: Served, queue: Queue
) -> None:
    """One message: each recipient's attempts, last reply and RCPT reply with the
    step each answered, and the header; not the body unless asked."""
    page = http(message_url(dashboard, queue.failed)).text
    assert "550 5.1.1 no such user" in page
    assert '<span class="step">RCPT</span>' in page
    assert "Subject: about p5carol@example.com" in page
    assert "The body of the message." not in page
    detail = http(message_url(dashboard, queue.delivered, api=True)).json()
    [alice] = detail["recipients"]  # type: ignore[misc]
    assert alice["last_reply"]["step"] == "end of data"
    assert alice["rcpt_reply"]["step"] == "RCPT"
    assert ["Subject", "about alice@example.org"] in detail["headers"]  # type: ignore[operator]
    assert "body" not in detail


def test_the_body_needs_the_token(dashboard: Served, queue: Queue) -> None:
    """?body=1 shows the body only to a request carrying the token."""
    url = message_url(dashboard, queue.failed)
    without = http(url + "?body=1")
    assert without.status == 200
    assert "The body of the message." not in without.text
    assert "to see the body" in without.text
    assert http(message_url(dashboard, queue.failed, True) + "?body=1").status == 401
    cookie = login(dashboard)
    shown = http(url + "?body=1", headers={"Cookie": cookie})
    assert "The body of the message." in shown.text
    api = http(
        message_url(dashboard, queue.failed, True) + "?body=1",
        headers={"X-Mailstrom-Token": TOKEN},
    )
    assert api.json()["body"] == "The body of the message.\r\n"


def test_a_message_id_with_a_slash_has_its_page(queue: Queue) -> None:
    """An id may hold "/" (RFC 5322 allows it): its link encodes it, and the
    page and the JSON find the message."""
    storage = SqliteStorage(queue.db)
    email = dataclasses.replace(prepared_email(7), message_id="a/b+c@example.test")
    try:
        storage.add(email, time.time())
    finally:
        storage.close()
    served = serve(queue)
    try:
        listing = http(served.base + "/messages").text
        assert 'href="/messages/a%2Fb%2Bc@example.test"' in listing
        page = http(message_url(served, email.message_id))
        assert page.status == 200 and "a/b+c@example.test" in page.text
        detail = http(message_url(served, email.message_id, api=True)).json()
        assert detail["id"] == "a/b+c@example.test"
    finally:
        served.close()


def test_a_message_page_shows_when_scheduled_mail_was_first_due(
    queue: Queue,
) -> None:
    """A message stored due in two hours shows when it was first due and since
    when its retries count, on its page and in its JSON; a message due when
    stored shows neither (both are its creation time)."""
    storage = SqliteStorage(queue.db)
    email = prepared_email(8)
    now = time.time()
    try:
        storage.add(email, now, send_at=now + 7200)
    finally:
        storage.close()
    served = serve(queue)
    try:
        page = http(message_url(served, email.message_id)).text
        due = re.search(r"<dt>First due</dt><dd><time[^>]*>in 1h5\dm</time>", page)
        assert due is not None
        assert "<dt>Retries count from</dt><dd><time" in page
        detail = http(message_url(served, email.message_id, api=True)).json()
        first_due = datetime.fromisoformat(str(detail["first_due"])).timestamp()
        assert abs(first_due - (now + 7200)) < 1
        assert detail["retry_since"] == detail["first_due"]
        plain = http(message_url(served, queue.delivered)).text
        assert "First due" not in plain and "Retries count from" not in plain
        shown = http(message_url(served, queue.delivered, api=True)).json()
        assert (shown["first_due"], shown["retry_since"]) == (None, None)
    finally:
        served.close()


def test_an_unknown_message_is_a_404(dashboard: Served) -> None:
    """A message id that names nothing is 404, on the page and in the API."""
    assert http(dashboard.base + "/messages/nope@example.test").status == 404
    answer = http(dashboard.base + "/api/messages/nope@example.test")
    assert answer.status == 404
    assert "nope@example.test" in answer.json()["error"]  # type: ignore[operator]


def test_a_hostile_subject_and_from_are_text_not_markup(
    dashboard: Served, queue: Queue
) -> None:
    """A Subject and a From holding HTML are shown escaped, on the list, on the
    message page and in its body."""
    cookie = login(dashboard)
    pages = [
        http(dashboard.base + "/messages").text,
        http(
            message_url(dashboard, queue.hostile) + "?body=1",
            headers={"Cookie": cookie},
        ).text,
    ]
    for page in pages:
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(&#x27;subject&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[1]
    assert "&lt;b&gt;not bold&lt;/b&gt;" in pages[1]
    listing = http(dashboard.base + "/api/messages?state=queued").json()
    assert listing["messages"][0]["subject"] == HOSTILE_SUBJECT  # type: ignore[index]


def test_every_response_forbids_scripts_from_elsewhere(dashboard: Served) -> None:
    """Pages carry a strict Content-Security-Policy, nosniff, no framing, no caching."""
    for path in ("/", "/api/overview", "/messages"):
        headers = http(dashboard.base + path).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"


def test_the_static_files_are_served(dashboard: Served) -> None:
    """The style sheet and the script come from package data, with their types."""
    css = http(dashboard.base + "/static/dashboard.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    script = http(dashboard.base + "/static/dashboard.js")
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert b"data-confirm" in script.body
    assert http(dashboard.base + "/static/../app.py").status == 404
    assert http(dashboard.base + "/nowhere").status == 404


def test_another_host_name_is_refused(dashboard: Served) -> None:
    """A Host the dashboard does not answer to (DNS rebinding) gets 421."""
    answer = http(dashboard.base + "/api/overview", headers={"Host": "evil.example"})
    assert answer.status == 421
    ok = http(dashboard.base + "/api/overview", headers={"Host": "localhost:1"})
    assert ok.status == 200


# -- acting ---------------------------------------------------------------------------


def test_an_action_without_the_token_is_refused(
    dashboard: Served, queue: Queue
) -> None:
    """No token (or a wrong one): 401, and the message is not held."""
    url = dashboard.base + "/api/actions/hold"
    assert (
        http(url, data={"id": queue.deferred}, headers=same_origin(dashboard)).status
        == 401
    )
    wrong = {"X-Mailstrom-Token": "not-the-token-at-all", **same_origin(dashboard)}
    assert http(url, data={"id": queue.deferred}, headers=wrong).status == 401
    form = dashboard.base + "/actions/hold"
    assert (
        http(form, data={"id": queue.deferred}, headers=same_origin(dashboard)).status
        == 401
    )
    assert not dashboard.storage.status(queue.deferred).held


def test_an_action_with_the_token_header_acts_and_is_logged(
    dashboard: Served, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    """The token in the header holds a message; the log says who and what."""
    caplog.set_level(logging.INFO, "mailstrom_py.dashboard")
    answer = http(
        dashboard.base + "/api/actions/hold",
        data=json.dumps({"ids": [f"<{queue.deferred}>"]}).encode(),
        headers={"X-Mailstrom-Token": TOKEN, "Content-Type": "application/json"},
    )
    assert answer.json() == {"action": "hold", "changed": [queue.deferred]}
    assert dashboard.storage.status(queue.deferred).held
    [record] = [r for r in caplog.records if "dashboard hold" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert "127.0.0.1:" in record.getMessage()
    assert "(token header)" in record.getMessage()
    assert queue.deferred in record.getMessage()


def test_kick_release_and_drop_act_on_the_named_messages(
    dashboard: Served, queue: Queue
) -> None:
    """Each action changes the messages it names and reports their ids."""
    headers = {"X-Mailstrom-Token": TOKEN}

    def act(action: str, message_id: str) -> object:
        url = f"{dashboard.base}/api/actions/{action}"
        return http(url, data={"id": message_id}, headers=headers).json()["changed"]

    assert act("release", queue.held) == [queue.held]
    assert not dashboard.storage.status(queue.held).held
    assert act("kick", queue.deferred) == [queue.deferred]
    assert act("drop", queue.failed) == [queue.failed]
    assert dashboard.storage.count(QueueFilter(ids=(queue.failed,))) == 0
    assert act("hold", queue.delivered) == []  # complete: nothing to hold


def test_fail_fails_the_pending_recipients_of_the_named_messages(
    dashboard: Served, queue: Queue
) -> None:
    """fail: every pending recipient fails with 5.3.0, "failed by an
    operator"; a completed message is not changed; nobody is told."""
    headers = {"X-Mailstrom-Token": TOKEN}
    cookie = login(dashboard)
    page = http(message_url(dashboard, queue.deferred), headers={"Cookie": cookie})
    assert 'action="/actions/fail"' in page.text
    done = http(message_url(dashboard, queue.delivered), headers={"Cookie": cookie})
    assert 'action="/actions/fail"' not in done.text
    url = f"{dashboard.base}/api/actions/fail"
    answer = http(url, data={"id": queue.deferred}, headers=headers).json()
    assert answer == {"action": "fail", "changed": [queue.deferred]}
    status = dashboard.storage.status(queue.deferred)
    assert status.completed
    assert {(r.status_code, r.detail) for r in status.recipients} == {
        ("5.3.0", "failed by an operator")
    }
    assert http(url, data={"id": queue.delivered}, headers=headers).json() == {
        "action": "fail",
        "changed": [],
    }
    assert dashboard.storage.count(QueueFilter(sender="")) == 0


def test_fail_queues_a_report_when_dsns_are_on(queue: Queue) -> None:
    """Given the fail of an Outbox with DSNs on, the action queues one report to
    the sender, from the null sender."""
    served = serve(queue, dsn=True)
    try:
        url = f"{served.base}/api/actions/fail"
        headers = {"X-Mailstrom-Token": TOKEN}
        answer = http(url, data={"id": queue.deferred}, headers=headers).json()
        assert answer["changed"] == [queue.deferred]
        [report] = served.storage.find(QueueFilter(sender=""))
        assert [r.address for r in report.recipients] == ["app@example.org"]
        assert b"failed by an operator" in served.storage.email(report.message_id).data
    finally:
        served.close()


def test_an_action_naming_no_message_does_nothing(dashboard: Served) -> None:
    """An action without ids is refused: it never means the whole queue."""
    answer = http(
        dashboard.base + "/api/actions/drop",
        data={"id": ""},
        headers={"X-Mailstrom-Token": TOKEN},
    )
    assert answer.status == 400
    assert dashboard.storage.count(QueueFilter()) == 5


def test_the_login_form_gives_a_cookie_that_acts_with_the_page_csrf(
    dashboard: Served, queue: Queue
) -> None:
    """After logging in, the message page has buttons; its form holds the
    message and returns to the page."""
    cookie = login(dashboard)
    url = message_url(dashboard, queue.deferred)
    page = http(url, headers={"Cookie": cookie}).text
    assert 'action="/actions/hold"' in page
    assert TOKEN not in page
    answer = http(
        dashboard.base + "/actions/hold",
        data={
            "id": queue.deferred,
            "csrf": csrf_of(page),
            "back": url[len(dashboard.base) :],
        },
        headers={"Cookie": cookie, "Referer": url},
    )
    assert answer.status == 303
    assert answer.headers["Location"] == url[len(dashboard.base) :]
    assert dashboard.storage.status(queue.deferred).held


def test_the_cookie_without_the_page_csrf_is_refused(
    dashboard: Served, queue: Queue
) -> None:
    """A form with the login cookie but not the page's csrf value does nothing."""
    cookie = login(dashboard)
    for csrf in ("", "0" * 64):
        answer = http(
            dashboard.base + "/actions/drop",
            data={"id": queue.deferred, "csrf": csrf},
            headers={"Cookie": cookie, **same_origin(dashboard)},
        )
        assert answer.status == 401
    assert dashboard.storage.count(QueueFilter(ids=(queue.deferred,))) == 1


def test_a_post_from_another_origin_is_refused(dashboard: Served, queue: Queue) -> None:
    """A POST whose Origin or Referer is another site is refused, with the
    token, the cookie and the csrf value all right."""
    cookie = login(dashboard)
    page = http(message_url(dashboard, queue.deferred), headers={"Cookie": cookie}).text
    form = {"id": queue.deferred, "csrf": csrf_of(page), "token": TOKEN}
    for foreign in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Origin": dashboard.base.replace("127.0.0.1", "localhost")},
    ):
        answer = http(
            dashboard.base + "/actions/drop",
            data=form,
            headers={"Cookie": cookie, "X-Mailstrom-Token": TOKEN, **foreign},
        )
        assert answer.status == 403, foreign
    login_elsewhere = http(
        dashboard.base + "/login",
        data={"token": TOKEN},
        headers={"Origin": "http://evil.example"},
    )
    assert login_elsewhere.status == 403
    assert dashboard.storage.count(QueueFilter(ids=(queue.deferred,))) == 1


def test_a_form_without_origin_or_referer_is_refused(
    dashboard: Served, queue: Queue
) -> None:
    """Only the token header may come without Origin and Referer (a script);
    the token in a form field may not."""
    url = dashboard.base + "/api/actions/hold"
    refused = http(url, data={"id": queue.deferred, "token": TOKEN})
    assert refused.status == 403
    assert not dashboard.storage.status(queue.deferred).held
    by_header = http(
        url, data={"id": queue.deferred}, headers={"X-Mailstrom-Token": TOKEN}
    )
    assert by_header.status == 200
    assert dashboard.storage.status(queue.deferred).held


def test_a_wrong_token_at_login_is_refused(dashboard: Served) -> None:
    """The login form with a wrong token answers 401 and sets no cookie."""
    answer = http(
        dashboard.base + "/login",
        data={"token": "guess-guess-guess-guess"},
        headers=same_origin(dashboard),
    )
    assert answer.status == 401
    assert "Set-Cookie" not in answer.headers
    assert "That token is wrong" in answer.text


def test_actions_are_post_requests(dashboard: Served, queue: Queue) -> None:
    """GET on an action's address is 405 and changes nothing."""
    answer = http(f"{dashboard.base}/actions/drop?id={queue.deferred}&token={TOKEN}")
    assert answer.status == 405
    assert http(f"{dashboard.base}/api/actions/drop").status == 405
    assert dashboard.storage.count(QueueFilter()) == 5


def test_read_only_serves_pages_without_any_action(queue: Queue) -> None:
    """--read-only: pages and JSON are served, no button shows even when logged
    in, and every action is 403 whatever the token."""
    served = serve(queue, read_only=True)
    try:
        cookie = login(served)
        page = http(message_url(served, queue.deferred), headers={"Cookie": cookie})
        assert page.status == 200
        assert "/actions/" not in page.text
        assert "read-only" in page.text
        assert http(served.base + "/api/overview").status == 200
        answer = http(
            served.base + "/api/actions/hold",
            data={"id": queue.deferred},
            headers={"X-Mailstrom-Token": TOKEN},
        )
        assert answer.status == 403
        assert not served.storage.status(queue.deferred).held
    finally:
        served.close()


# -- controls ---------------------------------------------------------------------------


def test_the_controls_page_lists_suspensions_and_suppressions(
    dashboard: Served,
) -> None:
    """/controls shows each destination suspended and each address
    suppressed, with its reason and times, and (logged in) the button that
    ends it and the forms that add one; /api/controls gives the same."""
    now = time.time()
    storage = dashboard.storage
    storage.suspend(Suspension("gmail", "421 4.7.28 rate limited", now, now + 600))
    storage.suppress(
        [Suppression("gone@example.org", "550 5.1.1 no such user", now, now + 86400)]
    )
    page = http(dashboard.base + "/controls")
    assert page.status == 200
    for text in ("gmail", "421 4.7.28 rate limited", "gone@example.org", "550 5.1.1"):
        assert text in page.text
    assert "/actions/" not in page.text  # not logged in: no buttons
    cookie = login(dashboard)
    page = http(dashboard.base + "/controls", headers={"Cookie": cookie})
    for action in ("resume", "unsuppress", "suspend", "suppress"):
        assert f'action="/actions/{action}"' in page.text
    listed = http(dashboard.base + "/api/controls").json()
    assert listed["kept"] is True
    assert listed["suspensions"] == [
        {
            "destination": "gmail",
            "reason": "421 4.7.28 rate limited",
            "since": now,
            "until": now + 600,
        }
    ]
    assert {
        "address": "gone@example.org",
        "reason": "550 5.1.1 no such user",
        "since": now,
        "until": now + 86400,
    } in listed["suppressions"]


def test_control_actions_suspend_resume_suppress_and_unsuppress(
    dashboard: Served,
) -> None:
    """Each control action changes the storage every worker reads: suspend
    for the minutes given, resume, suppress (the address folded to lower
    case, for the days given), unsuppress; each says whether it changed
    anything."""
    headers = {"X-Mailstrom-Token": TOKEN}
    storage = dashboard.storage

    def act(action: str, **fields: str) -> dict[str, object]:
        url = f"{dashboard.base}/api/actions/{action}"
        answer = http(url, data=dict(fields), headers=headers)
        assert answer.status == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    before = time.time()
    done = act("suspend", destination="Example.ORG", minutes="30", reason="asked")
    assert done == {"action": "suspend", "destination": "example.org", "changed": True}
    [suspension] = storage.suspensions(time.time())
    assert (suspension.destination, suspension.reason) == ("example.org", "asked")
    assert before + 1800 <= suspension.until <= time.time() + 1800
    assert act("resume", destination="example.org")["changed"] is True
    assert act("resume", destination="example.org")["changed"] is False
    assert storage.suspensions(time.time()) == []

    seeded = storage.suppressions(time.time())  # the queue's own hard bounce
    done = act("suppress", address="Bob@Example.org", days="2")
    assert done["address"] == "bob@example.org"
    [entry] = [e for e in storage.suppressions(time.time()) if e not in seeded]
    assert entry.address == "bob@example.org"
    assert "127.0.0.1" in entry.reason  # no reason given: who did it
    assert entry.until - entry.since == pytest.approx(2 * 86400)
    assert act("unsuppress", address="BOB@example.org")["changed"] is True
    assert storage.suppressions(time.time()) == seeded


@pytest.mark.parametrize(
    ("action", "fields"),
    [
        pytest.param("suspend", {}, id="no-destination"),
        pytest.param("suspend", {"destination": "a b"}, id="space-in-destination"),
        pytest.param(
            "suspend", {"destination": "x.org", "minutes": "-5"}, id="minutes"
        ),
        pytest.param("suspend", {"destination": "x.org", "minutes": "nan"}, id="nan"),
        pytest.param("suppress", {"address": "not-an-address"}, id="address"),
        pytest.param("suppress", {"address": "a@b.org", "days": "1e9"}, id="days"),
        pytest.param("suppress", {"address": "a@b.org", "reason": "x\r\ny"}, id="crlf"),
    ],
)
def test_a_bad_control_is_a_400_and_changes_nothing(
    dashboard: Served, action: str, fields: dict[str, str]
) -> None:
    """A missing field, a value out of range or a line break in the reason:
    400 with the reason, and nothing is stored."""
    seeded = dashboard.storage.suppressions(time.time())
    answer = http(
        f"{dashboard.base}/api/actions/{action}",
        data=fields,  # type: ignore[arg-type]
        headers={"X-Mailstrom-Token": TOKEN},
    )
    assert answer.status == 400
    assert answer.json()["error"]
    now = time.time()
    assert dashboard.storage.suspensions(now) == []
    assert dashboard.storage.suppressions(now) == seeded


def test_control_actions_need_the_token_and_a_writable_dashboard(
    dashboard: Served, queue: Queue
) -> None:
    """Without the token a control action is 401, on a read-only dashboard
    403 whatever the token; nothing is suspended either way."""
    url = "/api/actions/suspend"
    fields = {"destination": "example.org"}
    assert (
        http(dashboard.base + url, data=fields, headers=same_origin(dashboard)).status
        == 401
    )
    served = serve(queue, read_only=True)
    try:
        answer = http(
            served.base + url, data=fields, headers={"X-Mailstrom-Token": TOKEN}
        )
        assert answer.status == 403
    finally:
        served.close()
    assert dashboard.storage.suspensions(time.time()) == []


def test_a_form_suspends_and_comes_back_to_the_controls_page(dashboard: Served) -> None:
    """The page's suspend form, posted with the login cookie and the page's
    CSRF value, suspends the destination and redirects to the page."""
    cookie = login(dashboard)
    page = http(dashboard.base + "/controls", headers={"Cookie": cookie})
    answer = http(
        dashboard.base + "/actions/suspend",
        data={
            "destination": "relay",
            "minutes": "10",
            "csrf": csrf_of(page.text),
            "back": "/controls",
        },
        headers={"Cookie": cookie, **same_origin(dashboard)},
    )
    assert answer.status == 303
    assert answer.headers["Location"] == "/controls"
    [suspension] = dashboard.storage.suspensions(time.time())
    assert suspension.destination == "relay"


def test_the_dashboard_serves_a_postgresql_queue(
    postgres_dsn: str, smtp_server: SmtpServerFactory
) -> None:
    """Over PostgresStorage, as over SQLite: the overview counts one message
    in each state, a message's page shows its recipient, the hold action holds
    it in the shared queue, and the controls page suspends a destination."""
    server = smtp_server()
    delivered, deferred, failed, hostile, held = seed_into(
        PostgresStorage(postgres_dsn), server
    )
    storage = PostgresStorage(postgres_dsn)
    app = Dashboard(
        storage,
        Guard(TOKEN, dashboard_hosts("127.0.0.1")),
        Options(relay=f"127.0.0.1:{server.port}"),
        controls=storage,
    )
    served = Served(DashboardServer(("127.0.0.1", 0), app), storage)
    try:
        overview = http(served.base + "/api/overview").json()
        assert overview["messages"] == dict.fromkeys(
            ("queued", "deferred", "held", "delivered", "failed"), 1
        )
        assert overview["failed_last_hour"][0]["message_id"] == failed  # type: ignore[index]
        page = http(message_url(served, deferred))
        assert page.status == 200 and "t4bob@example.net" in page.text
        token = {"X-Mailstrom-Token": TOKEN}
        acted = http(
            served.base + "/api/actions/hold", data={"id": deferred}, headers=token
        )
        assert acted.json()["changed"] == [deferred]
        assert storage.status(deferred).held
        suspended = http(
            served.base + "/api/actions/suspend",
            data={"destination": "example.net"},
            headers=token,
        )
        assert suspended.json()["changed"] is True
        listed = http(served.base + "/api/controls").json()
        assert [s["destination"] for s in listed["suspensions"]] == ["example.net"]  # type: ignore[index]
        assert {delivered, hostile, held} <= {
            m["id"]
            for m in http(served.base + "/api/messages").json()["messages"]  # type: ignore[index]
        }
    finally:
        served.close()


# -- the command ----------------------------------------------------------------------

RELAY_SECRET = "relay-s3cret-password"


def command_config(
    tmp_path: Path, queue: Queue, port: int, dashboard: str = ""
) -> Path:
    """A configuration file for the seeded queue, relaying with a password,
    with ``[dashboard]`` listening on 127.0.0.1:``port`` plus ``dashboard``."""
    text = config_text(port=25, db=queue.db).replace(
        'tls = "none"\n',
        'tls = "none"\nusername = "app"\n'
        f'password = "{RELAY_SECRET}"\nallow_plaintext_auth = true\n',
    )
    path = tmp_path / "mailstrom.toml"
    path.write_text(
        text + f'\n[dashboard]\nlisten = "127.0.0.1:{port}"\n{dashboard}',
        encoding="utf-8",
    )
    return path


def test_the_command_serves_the_queue_until_sigterm(
    tmp_path: Path, queue: Queue, free_port: int
) -> None:
    """`mailstrom-py dashboard --config FILE` prints where it listens and the
    token it made up, serves every page without a secret of the file in them
    (and the queue's gauges at /metrics), acts with that token, and exits 0
    on SIGTERM."""
    config = command_config(tmp_path, queue, free_port)
    with Daemon("dashboard", "--config", str(config)) as daemon:
        base = f"http://127.0.0.1:{free_port}"
        daemon.wait_for_line(f"serving {base}/")
        line = daemon.wait_for_line("token for actions")
        token = line.rsplit(" ", 1)[1]
        assert len(token) >= 16
        for path in (
            "/",
            "/destinations",
            "/messages",
            "/api/overview",
            "/api/destinations",
            "/api/messages",
            "/messages/" + quote(queue.deferred),
            "/api/messages/" + quote(queue.deferred),
            "/controls",
            "/api/controls",
        ):
            answer = http(base + path)
            assert answer.status == 200, path
            assert RELAY_SECRET not in answer.text and token not in answer.text
        metrics = http(base + "/metrics")
        assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "\nmailstrom_queue_depth 3\n" in metrics.text
        assert "\nmailstrom_queue_held 1\n" in metrics.text
        acted = http(
            base + "/api/actions/hold",
            data={"id": queue.deferred},
            headers={"X-Mailstrom-Token": token},
        )
        assert acted.json()["changed"] == [queue.deferred]
        suspended = http(
            base + "/api/actions/suspend",
            data={"destination": "example.org", "minutes": "5"},
            headers={"X-Mailstrom-Token": token},
        )
        assert suspended.json()["changed"] is True
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert RELAY_SECRET not in daemon.stderr
    storage = SqliteStorage(queue.db)
    try:
        assert storage.status(queue.deferred).held
        [suspension] = storage.suspensions(time.time())
        assert suspension.destination == "example.org"
    finally:
        storage.close()


def test_a_token_from_the_file_is_used_and_never_printed(
    tmp_path: Path, queue: Queue, free_port: int
) -> None:
    """[dashboard] token_env gives the token: it acts, and is not printed."""
    config = command_config(
        tmp_path, queue, free_port, 'token_env = "DASHBOARD_TOKEN"\n'
    )
    env = {"DASHBOARD_TOKEN": TOKEN}
    with Daemon("dashboard", "--config", str(config), env=env) as daemon:
        base = f"http://127.0.0.1:{free_port}"
        daemon.wait_for_line("serving")
        acted = http(
            base + "/api/actions/hold",
            data={"id": queue.deferred},
            headers={"X-Mailstrom-Token": TOKEN},
        )
        assert acted.status == 200
        daemon.signal(signal.SIGINT)
        assert daemon.wait() == 0
    assert TOKEN not in daemon.stderr
    assert "token for actions" not in daemon.stderr


def test_read_only_and_listen_come_from_the_command_line(
    tmp_path: Path, queue: Queue, free_port: int, pick_port: int
) -> None:
    """--listen overrides the file's address, --read-only refuses every action."""
    config = command_config(tmp_path, queue, pick_port)
    listen = f"127.0.0.1:{free_port}"
    args = ("dashboard", "--config", str(config), "--listen", listen, "--read-only")
    with Daemon(*args) as daemon:
        daemon.wait_for_line(f"serving http://{listen}/ (read-only)")
        token = daemon.wait_for_line("token for actions").rsplit(" ", 1)[1]
        answer = http(
            f"http://{listen}/api/actions/hold",
            data={"id": queue.deferred},
            headers={"X-Mailstrom-Token": token},
        )
        assert answer.status == 403
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


@pytest.mark.parametrize(
    "case",
    [
        ('token = "short"\n', (), "dashboard.token: must be at least 16 characters"),
        ("", ("--listen", "8026"), "expected HOST:PORT"),
        ("", ("--token-file", "/nonexistent/token"), "--token-file: cannot read"),
    ],
)
def test_a_configuration_it_cannot_use_exits_2(
    tmp_path: Path, queue: Queue, free_port: int, case: tuple[str, tuple[str, ...], str]
) -> None:
    """A short token, a bad address or an unreadable token file: exit 2, one line."""
    extra, args, error = case
    config = command_config(tmp_path, queue, free_port, extra)
    done = run("dashboard", "--config", str(config), *args)
    assert done.returncode == 2
    assert error in done.stderr.decode()


def test_a_missing_queue_exits_1(tmp_path: Path, queue: Queue, free_port: int) -> None:
    """The dashboard never creates a queue: a missing file exits 1."""
    config = command_config(tmp_path, queue, free_port)
    config.write_text(
        config.read_text().replace(str(queue.db), str(tmp_path / "none.db"))
    )
    done = run("dashboard", "--config", str(config))
    assert done.returncode == 1
    assert "cannot open the queue" in done.stderr.decode()
    assert not (tmp_path / "none.db").exists()


def test_the_static_files_ship_as_package_data() -> None:
    """setup.cfg's package_data covers every file the pages load."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    patterns = [
        p.strip() for p in parser["options.package_data"]["mailstrom_py"].split(",")
    ]
    static = ROOT / "mailstrom_py" / "dashboard" / "static"
    files = sorted(static.iterdir())
    assert [f.name for f in files] == ["dashboard.css", "dashboard.js"]
    for file in files:
        name = file.relative_to(ROOT / "mailstrom_py").as_posix()
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name


# -- in a browser ---------------------------------------------------------------------


def _browser_missing() -> str | None:
    if webdriver.available():
        return None
    reason = (
        "headless Chromium is not installed (Debian packages chromium and"
        " chromium-driver; .ci/run installs them)"
    )
    if os.environ.get("MAILSTROM_REQUIRE_BROWSER"):
        pytest.fail(reason)
    return reason


def test_a_browser_filters_the_list_and_holds_a_message(queue: Queue) -> None:
    """In headless Chromium: the overview shows its chart, the list filtered by
    domain shows the deferred message, and after logging in its Hold button
    holds it in storage."""
    reason = _browser_missing()
    if reason is not None:
        pytest.skip(reason)
    served = serve(queue)
    try:
        with webdriver.Browser() as browser:
            browser.get(served.base + "/")
            assert browser.title.startswith("Overview")
            assert browser.find_all("svg.chart rect.bar-failed")
            browser.click(browser.find('nav a[href="/messages"]'))
            browser.type(browser.find("#filter-domain"), "example.net")
            browser.click(browser.find("#filter-submit"))
            browser.wait_until(lambda: "domain=example.net" in browser.url)
            [row] = browser.find_all("table.messages tbody tr")
            assert "t4bob@example.net" in browser.text(row)
            browser.click(browser.find("table.messages tbody a"))
            browser.click(browser.find("p.actions a"))
            browser.type(browser.find("#token"), TOKEN)
            browser.click(browser.find("form.login button"))
            browser.wait_until(lambda: "/messages/" in browser.url)
            browser.click(browser.find("button.button-hold"))
            browser.find("button.button-release")
            assert "(held)" in browser.text(browser.find("dl.facts"))
        assert served.storage.status(queue.deferred).held
    finally:
        served.close()


def test_a_browser_suspends_a_destination_and_resumes_it(queue: Queue) -> None:
    """In headless Chromium, logged in: the controls page's form suspends a
    destination, which then shows with its reason and a Resume button that
    ends the suspension in storage."""
    reason = _browser_missing()
    if reason is not None:
        pytest.skip(reason)
    served = serve(queue)
    try:
        with webdriver.Browser() as browser:
            browser.get(served.base + "/login?back=/controls")
            browser.type(browser.find("#token"), TOKEN)
            browser.click(browser.find("form.login button"))
            browser.wait_until(lambda: browser.url.endswith("/controls"))
            form = "form.control[action='/actions/suspend']"
            browser.type(browser.find(f"{form} input[name=destination]"), "gmail")
            browser.type(browser.find(f"{form} input[name=reason]"), "too many 421s")
            browser.click(browser.find(f"{form} button"))
            browser.wait_until(lambda: bool(browser.find_all("button.button-resume")))
            [row] = browser.find_all("table tbody tr")[:1]
            assert "too many 421s" in browser.text(row)
            assert [s.destination for s in served.storage.suspensions(time.time())] == [
                "gmail"
            ]
            browser.click(browser.find("button.button-resume"))
            browser.wait_until(lambda: not browser.find_all("button.button-resume"))
        assert served.storage.suspensions(time.time()) == []
    finally:
        served.close()
