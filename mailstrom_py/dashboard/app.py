"""The dashboard as a function from a request to a response, apart from any
socket: routing, the checks of :mod:`.guard`, and the pages and their JSON.

Pages and ``/api/...`` read without the token; actions, and a message's body,
need it. Every response forbids framing and scripts from elsewhere (a
Content-Security-Policy that allows only this dashboard's own files).
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import MessageNotFound, StorageError
from ..storage.controls import Controls
from .actions import ACTIONS, Fail, apply_action, ids_from
from .control_pages import controls_page
from .controls import (
    CONTROL_ACTIONS,
    apply_control,
    control_fields,
    controls_json,
    read_controls,
)
from .guard import Guard, Refused
from .jsonview import destinations_json, message_json, messages_json, overview_json
from .layout import Viewer
from .message_pages import message_page, messages_page
from .messages import MessageQuery, list_messages, message_detail
from .pages import destinations_page, error_page, login_page, overview_page
from .source import QueueSource
from .views import Options, read_destinations, read_overview

__all__ = ["Dashboard", "Request", "Response"]

log = logging.getLogger(__name__)

_STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
_HTML = "text/html; charset=utf-8"
_JSON = "application/json"
_SECURITY = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
)

Form = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Request:
    """One HTTP request.

    Attributes:
        method: ``GET`` or ``POST``.
        target: the path and query as sent.
        headers: the request's headers.
        body: the request's body (empty for GET).
        client: the peer's address, for the log.
    """

    method: str
    target: str
    headers: Message
    body: bytes = b""
    client: str = "-"


@dataclass(frozen=True)
class Response:
    """One HTTP response."""

    status: int
    body: bytes
    content_type: str = _HTML
    headers: tuple[tuple[str, str], ...] = ()

    def all_headers(self, static: bool = False) -> list[tuple[str, str]]:
        cache = "max-age=300" if static else "no-store"
        return [
            ("Content-Type", self.content_type),
            ("Cache-Control", cache),
            *_SECURITY,
            *self.headers,
        ]


class Dashboard:
    """Answers requests about ``queue``.

    Args:
        queue: the queue to show and act on.
        guard: checks hosts, the token and the origin of actions.
        options: what to show, and whether actions are offered.
        clock: the time now (seconds since the epoch).
        fail: does the "fail" action in place of ``queue.fail``, which tells
            no one; the command line passes an Outbox's ``fail``, which
            queues a report to each sender when the configuration has DSNs on.
        metrics: gives the metrics in the Prometheus text format, served at
            ``/metrics`` (without the token, as pages are); no such page
            when None.
        controls: where the suppression list and the suspensions are kept,
            shown at ``/controls`` with their actions (``suspend``,
            ``resume``, ``suppress``, ``unsuppress``); the page says there
            are none when None.
    """

    def __init__(
        self,
        queue: QueueSource,
        guard: Guard,
        options: Options,
        clock: Callable[[], float] = time.time,
        *,
        fail: Fail | None = None,
        metrics: Callable[[], str] | None = None,
        controls: Controls | None = None,
    ) -> None:
        self.queue = queue
        self.controls = controls
        self.fail = fail
        self.metrics = metrics
        self.guard = guard
        self.options = options
        self.clock = clock
        folder = importlib.resources.files(__package__).joinpath("static")
        self.static = {name: folder.joinpath(name).read_bytes() for name in _STATIC}

    def handle(self, request: Request) -> Response:
        """Answer ``request``; never raises for a bad request."""
        api = urlsplit(request.target).path.startswith("/api/")
        try:
            self.guard.check_host(request.headers)
            if request.method == "POST":
                return self._post(request)
            if request.method == "GET":
                return self._get(request)
            raise Refused(405, "use GET or POST")
        except Refused as exc:
            return self._error(request, api, exc.status, exc.reason)
        except MessageNotFound as exc:
            return self._error(request, api, 404, f"no message with id {exc}")
        except ValueError as exc:
            return self._error(request, api, 400, str(exc))
        except StorageError as exc:
            log.warning("dashboard: the queue cannot be read: %s", exc)
            return self._error(request, api, 503, "the queue cannot be read now")

    # -- reading ------------------------------------------------------------------

    def _get(self, request: Request) -> Response:
        parts = urlsplit(request.target)
        path, params = parts.path, parse_qs(parts.query)
        now = self.clock()
        viewer = self._viewer(request)
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        if path.startswith("/messages/") or path.startswith("/api/messages/"):
            return self._message(request, path, params, viewer, now)
        pages: dict[str, Callable[[], Response]] = {
            "/": lambda: _page(
                overview_page(
                    read_overview(self.queue, now, self.options), viewer, self.options
                )
            ),
            "/api/overview": lambda: _json(
                overview_json(read_overview(self.queue, now, self.options))
            ),
            "/destinations": lambda: _page(
                destinations_page(
                    read_destinations(self.queue, now, self.options), viewer
                )
            ),
            "/api/destinations": lambda: _json(
                destinations_json(read_destinations(self.queue, now, self.options))
            ),
            "/messages": lambda: self._messages(params, viewer, now, api=False),
            "/api/messages": lambda: self._messages(params, viewer, now, api=True),
            "/controls": lambda: _page(
                controls_page(read_controls(self.controls, now), viewer)
            ),
            "/api/controls": lambda: _json(
                controls_json(read_controls(self.controls, now))
            ),
            "/login": lambda: _page(login_page(viewer, _back(params))),
        }
        metrics = self.metrics
        if metrics is not None:
            pages["/metrics"] = lambda: Response(
                200, metrics().encode(), "text/plain; version=0.0.4; charset=utf-8"
            )
        answer = pages.get(path)
        if answer is None:
            if path.startswith(("/actions/", "/api/actions/")) or path == "/logout":
                raise Refused(405, "actions are POST requests")
            raise Refused(404, "there is no such page")
        return answer()

    def _messages(
        self, params: Form, viewer: Viewer, now: float, *, api: bool
    ) -> Response:
        query = MessageQuery.from_params(params)
        listing = list_messages(self.queue, query, now)
        if api:
            return _json(messages_json(listing, now))
        return _page(messages_page(listing, query, viewer, now))

    def _message(
        self, request: Request, path: str, params: Form, viewer: Viewer, now: float
    ) -> Response:
        api = path.startswith("/api/")
        segment = path.split("/messages/", 1)[1]
        if not segment or "/" in segment:  # an id's own "/" comes as %2F
            raise Refused(404, "there is no such page")
        message_id = unquote(segment)
        asked = params.get("body", [""])[-1] == "1"
        allowed = asked and self.guard.has_token(request.headers)
        if api and asked and not allowed:
            raise Refused(401, "the body needs the token")
        detail = message_detail(self.queue, message_id, with_body=allowed)
        if api:
            return _json(message_json(detail, now))
        return _page(message_page(detail, viewer, now, body_asked=asked))

    def _static(self, name: str) -> Response:
        body = self.static.get(name)
        if body is None:
            raise Refused(404, "there is no such file")
        return Response(200, body, _STATIC[name] + "; charset=utf-8")

    # -- acting -------------------------------------------------------------------

    def _post(self, request: Request) -> Response:
        path = urlsplit(request.target).path
        content_type = request.headers.get_content_type()
        json_body = content_type == _JSON
        form: Form = {} if json_body else parse_qs(request.body.decode("latin-1"))
        if path == "/login":
            return self._login(request, form)
        if path == "/logout":
            self.guard.authorise(request.headers, form)
            return _redirect("/", (("Set-Cookie", self.guard.logout_cookie()),))
        api = path.startswith("/api/actions/")
        if not api and not path.startswith("/actions/"):
            raise Refused(404, "there is no such page")
        action = path.rsplit("/", 1)[1]
        if action not in ACTIONS + CONTROL_ACTIONS:
            every = ", ".join(ACTIONS + CONTROL_ACTIONS)
            raise Refused(404, f"unknown action; one of {every}")
        if self.options.read_only:
            raise Refused(403, "the dashboard is read-only")
        how = self.guard.authorise(request.headers, form)
        who = f"{request.client} ({how})"
        if action in CONTROL_ACTIONS:
            if self.controls is None:
                raise Refused(404, "this storage keeps no controls")
            fields = control_fields(form, request.body, json_body)
            return self._control(self.controls, action, fields, form, who, api=api)
        ids = ids_from(form, request.body, json_body)
        changed = apply_action(
            self.queue, action, ids, self.clock(), who, fail=self.fail
        )
        if api:
            return _json({"action": action, "changed": changed})
        back = _back(form)
        if action == "drop" and back.startswith("/messages/"):
            back = "/messages"
        return _redirect(back)

    def _control(
        self,
        controls: Controls,
        action: str,
        fields: Mapping[str, str],
        form: Form,
        who: str,
        *,
        api: bool,
    ) -> Response:
        done = apply_control(controls, action, fields, self.clock(), who)
        return _json(done) if api else _redirect(_back(form))

    def _login(self, request: Request, form: Form) -> Response:
        if self.guard.origin_matches(request.headers) is not True:
            raise Refused(403, "log in from the dashboard's own page")
        back = _back(form)
        if not self.guard.token_matches(form.get("token", [""])[-1]):
            log.info("dashboard: a login from %s gave a wrong token", request.client)
            page = login_page(self._viewer(request), back, "That token is wrong.")
            return Response(401, page)
        log.info("dashboard: login from %s", request.client)
        return _redirect(back, (("Set-Cookie", self.guard.login_cookie()),))

    # -- helpers ------------------------------------------------------------------

    def _viewer(self, request: Request) -> Viewer:
        logged_in = self.guard.logged_in(request.headers)
        return Viewer(
            read_only=self.options.read_only,
            logged_in=logged_in,
            csrf=self.guard.csrf if logged_in else None,
            path=_back({"back": [request.target]}),
        )

    def _error(self, request: Request, api: bool, status: int, reason: str) -> Response:
        if api or status == 421:
            body = json.dumps({"error": reason}).encode("utf-8")
            return Response(status, body, _JSON)
        viewer = self._viewer(request)
        return Response(
            status, error_page(viewer, _TITLES.get(status, "Error"), reason)
        )


_TITLES = {
    400: "Bad request",
    401: "Token needed",
    403: "Refused",
    404: "Not found",
    405: "Not allowed",
    503: "Queue unavailable",
}


def _page(body: bytes) -> Response:
    return Response(200, body)


def _json(value: object) -> Response:
    return Response(200, json.dumps(value).encode("utf-8"), _JSON)


def _redirect(where: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(303, b"", "text/plain", (("Location", where), *headers))


def _back(form: Form) -> str:
    """The local path a form returns to: ``back``, if it is one, else ``/``."""
    back = form.get("back", ["/"])[-1]
    local = back.startswith("/") and not back.startswith("//") and "\\" not in back
    if not local or any(ord(c) < 0x21 for c in back):
        return "/"
    return back
