"""Delivery through one configured relay."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ..codes import SECURITY_FEATURES_NOT_SUPPORTED
from ..config import RelayConfig, ShapingConfig, Timeouts
from ..lograte import WarningRate
from ..message import PreparedEmail
from .base import Item, OnOutcome, Outcome
from .routing.mx import MxResolver, RouteError
from .shaping import Shaper, held_outcomes
from .smtp import SessionFailure, SmtpSession
from .smtp.pool import SessionPool
from .tls_policy import client_context, decide_tls
from .unreached import deferred, unreached

__all__ = ["RelayTransport"]

log = logging.getLogger(__name__)

# The relay is the one destination: every session shares this pool key.
_RELAY = "relay"


class RelayTransport:
    """Sends every message to the relay of a :class:`~mailstrom_py.RelayConfig`.

    Connect, EHLO, TLS as configured (certificates verified), AUTH only over TLS
    (or without it, with ``allow_plaintext_auth``), then one transaction per
    message with one RCPT per recipient. The session stays open in
    ``sessions`` for the next message (checked with RSET first).
    Trouble reaching the relay is never a permanent failure: its recipients are
    deferred until the retry policy gives up (a relay that cannot be reached says
    nothing about the recipients). That includes a relay name that does not
    resolve, whether the system resolver or ``RelayConfig.resolver`` looks it up;
    with the latter, each of the relay's addresses is tried until one connects.
    With ``require_tls`` a relay configured with ``tls="none"`` gets only
    messages that say ``TLS-Required: No`` (and REQUIRETLS messages, to be
    refused in the session); the others are deferred with 4.7.4.

    A relay that cannot be used (refused connection or login, failed TLS, a
    name that does not resolve) is logged at WARNING once a minute for each
    cause, read on ``clock`` (monotonic seconds), and at INFO otherwise.

    The relay is one destination of ``shaper``: its connections at once,
    messages per connection and rate are the shaper's ``"relay"`` limits
    (the default ones unless a destination of that name is configured), and a
    suspension of ``"relay"`` holds every message back.
    """

    def __init__(
        self,
        relay: RelayConfig,
        *,
        helo_name: str,
        timeouts: Timeouts,
        require_tls: bool = False,
        sessions: SessionPool | None = None,
        shaper: Shaper | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._relay = relay
        self._clock = clock
        self._warnings = WarningRate()
        self._sessions = sessions if sessions is not None else SessionPool()
        self._shaper = shaper if shaper is not None else Shaper(ShapingConfig())
        self._destination = self._shaper.relay()
        self._require_tls = require_tls
        # The relay's sessions are alike for every message (see decide_tls).
        self._tls = decide_tls(relay, client_context(relay), require_tls=require_tls)
        # The refusal of a message, by its RFC 8689 options: all decide_tls
        # reads of a message.
        self._refusals: dict[tuple[bool, bool], str | None] = {}
        if self._tls.refusal is not None:
            log.warning(
                "TLS is required but the relay %s is used without it: only mail "
                "saying TLS-Required: No will be delivered",
                relay.host,
            )
        self._helo_name = helo_name
        self._timeouts = timeouts
        self._credentials = (
            (relay.username, relay.password)
            if relay.username is not None and relay.password is not None
            else None
        )
        self._mx = MxResolver(relay.resolver) if relay.resolver is not None else None

    def deliver(self, email: PreparedEmail, recipients: Sequence[str]) -> list[Outcome]:
        """Deliver ``email`` to ``recipients`` through the relay; one outcome each."""
        [outcomes] = self.deliver_many([(email, recipients)])
        return outcomes

    def deliver_many(
        self, batch: Sequence[Item], on_outcome: OnOutcome | None = None
    ) -> list[list[Outcome]]:
        """Deliver each message of ``batch`` as :meth:`deliver` would; one outcome
        list per item, in order, each also told to ``on_outcome`` as soon as it
        is final (see :class:`~mailstrom_py.delivery.BatchTransport`).

        The batch holds one concurrency slot and goes over one session (more
        only when the session's message limit is reached or its connection
        ends), pipelined across messages where the relay offers PIPELINING
        (see :meth:`SmtpSession.send_many`). Messages not started when a
        connection ended go on a new one; none is sent twice. Under a rate,
        each message waits for its turn and goes alone; a message whose turn
        is too far off, or any while the relay is suspended (by a command, or
        by a reply a rule matches), is held back, its attempt not counted.
        """
        results: list[list[Outcome]] = [[] for _ in batch]

        def settle(index: int, outcomes: list[Outcome]) -> None:
            results[index] = outcomes
            if on_outcome is not None:
                on_outcome(index, outcomes)

        hold = self._shaper.held(self._destination)
        if hold is not None:
            for index, (_, recipients) in enumerate(batch):
                settle(index, held_outcomes(recipients, hold))
            return results
        with self._shaper.connection(self._destination):
            self._deliver_many(batch, settle)
        return results

    def _deliver_many(self, batch: Sequence[Item], on: OnOutcome) -> None:
        def settle(index: int, outcomes: list[Outcome]) -> None:
            on(index, outcomes)
            self._shaper.observe(self._destination, outcomes)

        todo: list[int] = []
        for index, (email, recipients) in enumerate(batch):
            refusal = self._refusal(email)
            if refusal is None:
                todo.append(index)
            else:
                code = SECURITY_FEATURES_NOT_SUPPORTED
                settle(index, deferred(recipients, code, refusal))
        while todo:
            hold = self._shaper.held(self._destination) or self._shaper.turn(
                self._destination
            )
            if hold is not None:
                for index in todo:
                    settle(index, held_outcomes(batch[index][1], hold))
                break
            try:
                sent = self._send_some(batch, todo, settle)
            except SessionFailure as failure:
                for index in todo:
                    settle(index, unreached(batch[index][1], [failure]))
                break
            todo = todo[len(sent) :]

    def _refusal(self, email: PreparedEmail) -> str | None:
        """Why ``email`` may not go to the relay, or None: the ``refusal`` of
        its TLS policy, the one part of it that differs from one message to
        another, decided once for each combination of the message's RFC 8689
        options (REQUIRETLS, ``TLS-Required: No``)."""
        options = (email.require_tls, email.tls_optional)
        try:
            return self._refusals[options]
        except KeyError:
            pass
        context, require_tls = self._tls.context, self._require_tls
        policy = decide_tls(self._relay, context, require_tls=require_tls, email=email)
        self._refusals[options] = policy.refusal
        return policy.refusal

    def _send_some(
        self, batch: Sequence[Item], todo: list[int], settle: OnOutcome
    ) -> list[list[Outcome]]:
        """Send the items ``todo`` lists, in order, over one session: as many as
        it has room for, fewer if its connection ends; return their outcomes.

        Raises:
            SessionFailure: no session with the relay could be opened.
        """

        most = self._shaper.messages_per_connection(self._destination)
        turns = 1 if self._shaper.paced(self._destination) else len(todo)

        def send(session: SmtpSession) -> list[list[Outcome]]:
            chunk = todo[: min(self._sessions.room(session, most), turns)]
            return session.send_many([batch[i] for i in chunk], _within(settle, chunk))

        session = self._sessions.take(_RELAY)
        if session is None:
            session = self._connect()
        return self._sessions.use(
            _RELAY, session, send, reopen=self._connect, max_messages=most
        )

    def _connect(self) -> SmtpSession:
        """Open a new session with the relay.

        Raises:
            SessionFailure: the relay's name did not resolve, or no address of
                it gave a usable session.
        """
        host, port = self._relay.address
        try:
            addresses = [host] if self._mx is None else self._mx.addresses(host)
        except RouteError as exc:
            # Postfix: never bounce mail after a host lookup problem with a relay.
            detail = f"cannot resolve the relay {host}: {exc.detail}"
            self._trouble(exc.status_code, detail)
            raise SessionFailure(detail, exc.status_code, connected=False) from None
        try:
            return self._open(host, port, addresses)
        except SessionFailure as failure:
            self._trouble(
                failure.status_code, f"relay {host}:{port} unusable: {failure.detail}"
            )
            raise

    def _trouble(self, cause: str, detail: str) -> None:
        """Log trouble that stops all delivery; ``cause`` is its status code."""
        warn = self._warnings.warn(_RELAY, cause, self._clock())
        log.log(logging.WARNING if warn else logging.INFO, "%s", detail)

    def _open(self, host: str, port: int, addresses: list[str]) -> SmtpSession:
        """Open a session at the first of ``addresses`` that takes the connection."""
        for address in addresses[:-1]:
            try:
                return self._session(host, address, port)
            except SessionFailure as failure:
                if failure.connected:
                    raise
                log.info("relay %s:%d: %s", host, port, failure.detail)
        return self._session(host, addresses[-1], port)

    def _session(self, host: str, address: str, port: int) -> SmtpSession:
        return SmtpSession.open(
            host=host,
            address=address,
            port=port,
            helo_name=self._helo_name,
            timeouts=self._timeouts,
            tls=self._tls,
            credentials=self._credentials,
            plaintext_auth=self._relay.allow_plaintext_auth,
        )

    def close(self) -> None:
        """Close the sessions kept open for reuse."""
        self._sessions.close()


def _within(settle: OnOutcome, chunk: list[int]) -> OnOutcome:
    """``settle`` for a part of the batch, whose item ``n`` is ``chunk[n]`` of it."""
    return lambda n, outcomes: settle(chunk[n], outcomes)
