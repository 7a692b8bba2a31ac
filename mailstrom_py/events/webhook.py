"""The webhook sender: posts the events of a storage's journal to a URL, at
least once each.

Events reach the journal in the same atomic step as the outcome they describe
(:class:`~mailstrom_py.storage.EventJournal`); the sender takes the oldest,
POSTs them as one JSON body, and acknowledges them once the receiver answered
2xx. A failed POST is tried again, with doubling waits, until it succeeds;
events not yet posted when the process ends are in the journal for the next
sender (with a durable storage). A receiver may see an event twice (a POST
that succeeded but whose answer was lost): each carries the message id,
recipient, kind and time to tell duplicates by.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import math
import socket
import ssl
import threading
import time
import urllib.parse

from ..config import WebhookConfig
from ..errors import StorageError, WebhookError
from ..storage.journal import EventJournal, JournalEntry

__all__ = ["SIGNATURE_HEADER", "WebhookSender"]

log = logging.getLogger(__name__)

#: The header carrying ``sha256=<hex HMAC of the body>`` when a secret is set.
SIGNATURE_HEADER = "X-Mailstrom-Signature"

# How long an idle sender waits before looking at the journal again, unless
# woken by new events (events written by another process are found so).
_POLL = 0.5
# The most of a reply's body read (it is not used).
_MAX_REPLY = 64 * 1024


class WebhookSender:
    """Posts a journal's events to ``config.url`` on a thread of its own.

    Args:
        journal: the storage keeping the events.
        config: where and how to post.
    """

    def __init__(self, journal: EventJournal, config: WebhookConfig) -> None:
        self._journal = journal
        self._config = config
        self._url = urllib.parse.urlsplit(config.url)
        self._context = (
            ssl.create_default_context(cafile=config.ca_file)
            if self._url.scheme == "https"
            else None
        )
        self._kinds = frozenset(config.kinds)
        self._wake = threading.Event()
        self._stop_at: float | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._posted = 0
        self._failures = 0
        self._warned_at = -math.inf

    @property
    def posted(self) -> int:
        """How many events were posted (acknowledged by the receiver)."""
        return self._posted

    @property
    def failures(self) -> int:
        """How many POSTs failed."""
        return self._failures

    def start(self) -> None:
        """Start posting on a thread of its own."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mailstrom-webhook", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        """Look at the journal now: events were written."""
        self._wake.set()

    def stop(self, drain: float = 0.0) -> bool:
        """Keep posting for up to ``drain`` seconds while events wait, then stop.

        Returns:
            True when the thread ended in time (a POST under way ends by its
            timeout).
        """
        self._stop_at = time.monotonic() + drain
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(drain + self._config.timeout + 1.0)
        return not thread.is_alive()

    def send_once(self) -> int:
        """Post the oldest batch of events in the calling thread.

        Returns:
            How many journal entries were handed on (0: the journal is empty).

        Raises:
            WebhookError: the POST failed; the events stay in the journal.
            StorageError: the journal could not be read or updated.
        """
        entries = self._journal.take_events(self._config.batch)
        if not entries:
            return 0
        chosen = self._chosen(entries)
        if chosen:
            self._post(b'{"events":[' + b",".join(chosen) + b"]}")
        self._journal.ack_events([e.id for e in entries])
        self._posted += len(chosen)
        return len(entries)

    def _chosen(self, entries: list[JournalEntry]) -> list[bytes]:
        if not self._kinds:
            return [e.payload.encode() for e in entries]
        return [
            e.payload.encode()
            for e in entries
            if json.loads(e.payload).get("kind") in self._kinds
        ]

    def _run(self) -> None:
        config = self._config
        delay = config.retry_initial
        while True:
            stop_at = self._stop_at
            if stop_at is not None and time.monotonic() >= stop_at:
                return
            try:
                sent = self.send_once()
            except (WebhookError, StorageError) as exc:
                self._failures += 1
                self._complain(exc)
                self._pause(delay)
                delay = min(delay * 2, config.retry_max)
                continue
            delay = config.retry_initial
            if sent == 0:
                if self._stop_at is not None:
                    return
                self._pause(_POLL)

    def _pause(self, seconds: float) -> None:
        stop_at = self._stop_at
        if stop_at is not None:
            seconds = min(seconds, max(0.0, stop_at - time.monotonic()))
        self._wake.wait(seconds)
        self._wake.clear()

    def _complain(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            log.warning("webhook %s: %s; retrying", self._config.url, exc)
        else:
            log.info("webhook %s: %s; retrying", self._config.url, exc)

    def _post(self, body: bytes) -> None:
        """POST ``body``; return once the receiver answered 2xx.

        Raises:
            WebhookError: anything else, within ``config.timeout`` seconds of
                connecting.
        """
        url, timeout = self._url, self._config.timeout
        conn: http.client.HTTPConnection
        if self._context is not None:
            conn = http.client.HTTPSConnection(
                url.hostname or "", url.port, timeout=timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(
                url.hostname or "", url.port, timeout=timeout
            )
        headers = {"Content-Type": "application/json", "User-Agent": "mailstrom_py"}
        secret = self._config.secret
        if secret is not None:
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        cutoff = threading.Timer(timeout, _cut, (conn,))
        try:
            conn.connect()
            cutoff.start()
            conn.request("POST", path, body, headers)
            reply = conn.getresponse()
            reply.read(_MAX_REPLY)
        except (OSError, http.client.HTTPException) as exc:
            raise WebhookError(f"POST failed: {exc!r}") from exc
        finally:
            cutoff.cancel()
            conn.close()
        if not 200 <= reply.status < 300:
            raise WebhookError(f"the receiver answered {reply.status} {reply.reason}")


def _cut(conn: http.client.HTTPConnection) -> None:
    """End an exchange that outlasted its deadline: a blocked read returns."""
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already
