"""Real-world messages, non-conforming ones included, go out as a plain client sends them.

The corpus is CPython's own email test data (``test/test_email/data/msg_*.txt``):
messages with a multipart that lacks its boundary, headers that run into the body,
no From, a From without a domain, two Cc fields. Each goes to a loopback server
twice, through ``smtplib.sendmail()`` with the raw bytes and through
``Mailstrom.send_email()``, both with an explicit envelope.
"""

from __future__ import annotations

import re
import smtplib
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from support.smtpd import SmtpServer, SmtpServerFactory

from mailstrom_py import (
    Config,
    InvalidMessageError,
    Mailstrom,
    MemoryStorage,
    RelayConfig,
    Timeouts,
)

try:
    import test as _cpython_tests
except ImportError:  # some distributions ship Python without its test suite
    CORPUS: list[Path] = []
else:
    DATA = Path(_cpython_tests.__file__).parent / "test_email" / "data"
    CORPUS = sorted(DATA.glob("msg_*.txt"))

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
MAIL_FROM = "sender@example.test"
HEADER_LINE = re.compile(rb"[!-9;-~]+:|[ \t]")
BLIND = re.compile(rb"(?i)(?:resent-)?bcc:")

pytestmark = pytest.mark.skipif(
    not CORPUS, reason="this Python has no test/test_email/data directory"
)


def crlf(data: bytes) -> bytes:
    """*data* with every line end CRLF, ending in CRLF."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def expected_bytes(given: bytes, message_id: str) -> bytes:
    """What send_email() documents it sends for *given*, line ends aside.

    Its octets in CRLF, but for the documented changes: a leading mbox ``From ``
    line dropped, Bcc and Resent-Bcc removed, and Date and Message-ID added at the
    end of the header section when missing.
    """
    lines = crlf(given).split(b"\r\n")
    if lines[0].startswith(b"From "):
        del lines[0]
    end = 0
    while end < len(lines) and lines[end] and HEADER_LINE.match(lines[end]):
        end += 1
    head: list[bytes] = []
    blind = False
    for line in lines[:end]:
        if line[:1] not in (b" ", b"\t"):
            blind = BLIND.match(line) is not None
        if not blind:
            head.append(line)
    names = {line.partition(b":")[0].lower() for line in head if line[:1] not in b" \t"}
    if b"date" not in names:
        head.append(b"Date: " + format_datetime(NOW).encode())
    if b"message-id" not in names:
        head.append(b"Message-ID: <" + message_id.encode() + b">")
    return b"\r\n".join(head + lines[end:])


def send_with_smtplib(server: SmtpServer, given: bytes, recipient: str) -> bool:
    """Send *given* as raw bytes in CRLF; return whether it arrived unchanged."""
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.sendmail(MAIL_FROM, [recipient], crlf(given))
    [received] = [m for m in server.handler.messages if m.rcpt_tos == (recipient,)]
    return received.data == crlf(given)


def send_with_mailstrom(server: SmtpServer, given: bytes, recipient: str) -> str:
    """Send *given* with send_email(): ``intact``, ``altered`` or why it was refused."""
    config = Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        timeouts=Timeouts.uniform(10),
    )
    mailer = Mailstrom(config, MemoryStorage(), clock=NOW.timestamp)
    try:
        message_id = mailer.send_email(given, mail_from=MAIL_FROM, rcpt_to=[recipient])
    except InvalidMessageError as exc:
        return f"refused: {exc}"
    finally:
        mailer.run_once()
        mailer.stop()
    [received] = [m for m in server.handler.messages if m.rcpt_tos == (recipient,)]
    return "intact" if received.data == expected_bytes(given, message_id) else "altered"


def test_the_corpus_goes_out_at_least_as_intact_as_with_smtplib(
    smtp_server: SmtpServerFactory,
) -> None:
    """send_email() delivers as many corpus messages intact as smtplib, and alters none."""
    server = smtp_server()
    smtplib_intact = 0
    outcomes: dict[str, list[str]] = {"intact": [], "refused": [], "altered": []}
    for number, path in enumerate(CORPUS):
        raw = path.read_bytes()
        smtplib_intact += send_with_smtplib(server, raw, f"s{number}@example.test")
        for form, given in (("as-is", raw), ("crlf", crlf(raw))):
            recipient = f"{form}.{number}@example.test"
            outcome = send_with_mailstrom(server, given, recipient)
            kind = outcome.partition(":")[0]
            outcomes[kind].append(f"{path.name} {form} {outcome}")
    summary = {kind: len(names) for kind, names in outcomes.items()}
    assert outcomes["altered"] == [], summary
    assert len(outcomes["intact"]) >= 2 * smtplib_intact, outcomes["refused"]
