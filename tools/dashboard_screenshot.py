"""Make the README's screenshot of the dashboard: docs/dashboard.png.

Seeds a demonstration queue in a temporary SQLite file (three hours of mail
through a relay: most delivered, a domain that starts throttling with 421, a
few unknown users refused with 550, some mail queued and held), serves the
dashboard on a free loopback port, and has headless Chromium (Debian's
``chromium`` package) save the overview. Nothing leaves the machine.

    python tools/dashboard_screenshot.py
    python tools/dashboard_screenshot.py --page /destinations --output dest.png
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mailstrom_py import (
    Config,
    DeliveryResult,
    Outbox,
    QueueFilter,
    RecipientStatus,
    RelayConfig,
    SmtpReply,
    SqliteStorage,
)
from mailstrom_py.dashboard import (
    Dashboard,
    DashboardServer,
    Guard,
    Options,
    dashboard_hosts,
)
from mailstrom_py.status import Remote, SmtpStep

ROOT = Path(__file__).resolve().parents[1]
RELAY = Remote("smtp.example.org", "127.0.0.1", 587, "TLSv1.3", True)
DOMAINS = ("example.com", "example.net", "customer.example", "mail.example.org")
ACCEPTED = SmtpReply(250, "2.0.0", "Ok: queued as 4Xk2Lm", SmtpStep.END_OF_DATA)
RCPT_OK = SmtpReply(250, "2.1.5", "Ok", SmtpStep.RCPT)
THROTTLED = SmtpReply(
    421, "4.7.0", "Too many messages, slow down and try again later", SmtpStep.RCPT
)
UNKNOWN = SmtpReply(
    550, "5.1.1", "Recipient address rejected: user unknown", SmtpStep.RCPT
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def seed(storage: SqliteStorage, now: float, rng: random.Random) -> None:
    """Three hours of mail, one attempt each, recorded as a worker would."""
    clock = [now]
    config = Config(
        helo_name="app.example.org", delivery=RelayConfig(host="smtp.example.org")
    )
    outbox = Outbox(config, storage, clock=lambda: clock[0])
    for minute in range(180, 0, -1):
        busy = 4 + 3 * (minute % 60 < 20) + rng.randint(0, 3)
        for _ in range(busy):
            clock[0] = now - minute * 60 + rng.uniform(0, 55)
            domain = rng.choice(DOMAINS)
            user = rng.choice(("ana", "ben", "chen", "dara", "eli", "fay"))
            message_id = outbox.send_email(
                f"From: Shop <orders@app.example.org>\r\nTo: {user}@{domain}\r\n"
                f"Subject: Your order {rng.randint(1000, 9999)} has shipped\r\n"
                "\r\nThank you for your order.\r\n".encode()
            )
            if minute > 1:
                record(
                    storage,
                    message_id,
                    at=clock[0] + 1,
                    domain=domain,
                    minute=minute,
                    rng=rng,
                )
    for held in range(3):
        clock[0] = now - 600 + held
        message_id = outbox.send_email(
            b"From: news@app.example.org\r\nTo: list@customer.example\r\n"
            b"Subject: Newsletter draft\r\n\r\nDraft.\r\n"
        )
        storage.hold(QueueFilter(ids=(message_id,)))


def record(
    storage: SqliteStorage,
    message_id: str,
    *,
    at: float,
    domain: str,
    minute: int,
    rng: random.Random,
) -> None:
    claims = storage.claim_due(at, 10_000, 900.0)
    [claim] = [c for c in claims if c.message_id == message_id]
    for other in claims:
        if other is not claim:  # due again meanwhile: left as it was
            storage.record(other, other.before.recipients)
    [recipient] = claim.status.recipients
    if domain == "example.net" and minute < 50:
        update = outcome(recipient, DeliveryResult.DEFERRED, THROTTLED, at + 900)
    elif rng.random() < 0.03:
        update = outcome(recipient, DeliveryResult.FAILED, UNKNOWN, None)
    else:
        update = dataclasses.replace(
            outcome(recipient, DeliveryResult.DELIVERED, ACCEPTED, None),
            rcpt_reply=RCPT_OK,
        )
    storage.record(claim, [update])


def outcome(
    r: RecipientStatus, result: DeliveryResult, reply: SmtpReply, retry: float | None
) -> RecipientStatus:
    return dataclasses.replace(
        r,
        result=result,
        last_reply=reply,
        rcpt_reply=reply if reply.step is SmtpStep.RCPT else None,
        status_code=reply.enhanced,
        detail=f"smtp.example.org answered {reply.step} with {reply}",
        next_attempt_at=retry,
        remote=RELAY,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs/dashboard.png")
    parser.add_argument("--page", default="/", help="the page to show (default /)")
    parser.add_argument("--size", default="1200,1020", help="the window, W,H")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (Debian package chromium)")
    with tempfile.TemporaryDirectory() as folder:
        storage = SqliteStorage(Path(folder) / "outbox.db", synchronous="NORMAL")
        seed(storage, time.time(), random.Random(2025))
        app = Dashboard(
            storage,
            Guard("a-token-for-the-screenshot", dashboard_hosts("127.0.0.1")),
            Options(relay="smtp.example.org:587"),
        )
        server = DashboardServer(("127.0.0.1", 0), app)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            subprocess.run(
                [
                    chromium,
                    *FLAGS,
                    f"--user-data-dir={folder}/profile",
                    f"--window-size={args.size}",
                    f"--screenshot={args.output.resolve()}",
                    server.url.rstrip("/") + args.page,
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
        finally:
            server.shutdown()
            server.server_close()
            storage.close()
    print(f"{args.output}: {args.output.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
