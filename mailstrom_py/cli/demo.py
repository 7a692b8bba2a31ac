"""A self-contained demonstration: a loopback SMTP server, a mailer, live statuses.

Needs the ``demo`` extra (aiosmtpd). Nothing leaves the machine: the server
listens on 127.0.0.1 and the mailer relays to it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from ..config import Config, RelayConfig, Timeouts
from ..core import Mailstrom
from ..retry import RetryPolicy
from ..status import MessageStatus

__all__ = ["run_demo"]

#: Local parts the demo server refuses, and how.
REFUSALS = {
    "nobody": "550 5.1.1 <nobody@example.test>: no such user here",
    "busy": "450 4.2.1 <busy@example.test>: mailbox busy, try again later",
}


class _DemoHandler:
    """aiosmtpd handler: accepts mail, except for the local parts in REFUSALS."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        refusal = REFUSALS.get(address.partition("@")[0].lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.received += 1
        return f"250 2.0.0 queued as demo-{self.received}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _messages() -> list[EmailMessage]:
    plans = [
        ("Welcome aboard", ["alice@example.test"]),
        ("Your invoice", ["bob@example.test", "carol@example.test"]),
        (
            "Team update",
            ["alice@example.test", "nobody@example.test", "busy@example.test"],
        ),
        ("Password reset", ["dave@example.test"]),
    ]
    messages = []
    for subject, recipients in plans:
        msg = EmailMessage()
        msg["From"] = "Demo App <app@example.test>"
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = subject
        msg.set_content(
            f"{subject}.\n\nThis message was sent by the mailstrom_py demo.\n"
        )
        messages.append(msg)
    return messages


def _describe(status: MessageStatus) -> list[str]:
    lines = []
    for r in status.recipients:
        reply = f"  {r.last_reply}" if r.last_reply else ""
        lines.append(
            f"  {r.address:<24} {r.result.upper():<9} attempts={r.attempts}{reply}"
        )
    return lines


def run_demo(seconds: float = 3.5, out: Callable[[str], None] = print) -> int:
    """Run the demo for about ``seconds`` seconds, writing lines through ``out``.

    Returns:
        0 when the demo ended with the expected mix of results, 1 otherwise.
    """
    try:
        from aiosmtpd.controller import Controller  # noqa: PLC0415 (optional extra)
    except ImportError:
        out("The demo needs aiosmtpd: pip install 'mailstrom_py[demo]'")
        return 2

    handler = _DemoHandler()
    port = _free_port()
    server = Controller(
        handler, hostname="127.0.0.1", port=port, server_hostname="demo.test"
    )
    server.start()
    out(f"Demo SMTP server listening on 127.0.0.1:{port}")
    out("It refuses nobody@ for good (550) and busy@ for now (450).\n")
    config = Config(
        helo_name="app.example.test",
        delivery=RelayConfig(host="127.0.0.1", port=port, tls="none"),
        retry=RetryPolicy(initial_delay=1.0, max_delay=2.0, jitter=0.0),
        timeouts=Timeouts.uniform(10),
    )
    try:
        with Mailstrom(config) as mailer:
            ids = []
            for msg in _messages():
                message_id = mailer.send_email(msg)
                ids.append(message_id)
                out(f"queued {message_id}  {msg['Subject']!r}")
            out("")
            seen: dict[str, list[str]] = {}
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for message_id in ids:
                    lines = _describe(mailer.query_status(message_id))
                    if seen.get(message_id) != lines:
                        seen[message_id] = lines
                        out(f"{time.strftime('%H:%M:%S')} {message_id}")
                        for line in lines:
                            out(line)
                time.sleep(0.05)
            final = [mailer.query_status(i) for i in ids]
    finally:
        server.stop()
    results = {r.result.value for s in final for r in s.recipients}
    out(f"\nThe server accepted {handler.received} transactions.")
    out("Final results: " + ", ".join(sorted(results)))
    return 0 if results == {"delivered", "failed", "deferred"} else 1
