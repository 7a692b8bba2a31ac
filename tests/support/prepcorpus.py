"""A varied corpus of messages, and what preparing each gives, to pin prepared bytes.

Each entry is a message (mostly :class:`~email.message.EmailMessage` objects, the
shape most callers send, and some bytes, str and compat32 messages) with the
arguments it is prepared with. :func:`outcomes` prepares every entry with a fixed
clock and seeded Message-IDs and returns what came out: the prepared message's
fields, its bytes in base64, or the error it raised.

``prepcorpus.json`` beside this module holds those outcomes as the library gave
them before its preparation was made cheaper; ``tests/test_prepared_bytes.py``
checks that today's outcomes are the same, byte for byte. It is written by::

    PYTHONPATH=<checkout> python tests/support/prepcorpus.py > tests/support/prepcorpus.json
"""

from __future__ import annotations

import base64
import json
import random
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address, Group
from email.message import EmailMessage, Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

from mailstrom_py.errors import InvalidMessageError
from mailstrom_py.message import Preparer
from mailstrom_py.message.completion import MessageIds

__all__ = ["FIXTURE", "HELO", "corpus", "outcomes", "python_version"]

FIXTURE = Path(__file__).with_name("prepcorpus.json")
HELO = "mx.example.org"
CLOCK = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp()
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua.\n"
)
PDF = bytes(range(256)) * 9 + b"%%EOF\n"

Entry = tuple[str, Callable[[], object], dict[str, Any]]


def _message(**headers: object) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    return msg


def _simple() -> EmailMessage:
    msg = _message(From="bench@example.test", To="sink1@example.test")
    msg["Subject"] = "benchmark 1"
    msg.set_content(("x" * 70 + "\n") * 28)
    return msg


def _non_ascii() -> EmailMessage:
    msg = _message(
        From=Address("Jürgen Müller", "juergen", "example.org"),
        To="Zoë Ångström <zoe@example.org>, bob@example.org",
        Subject="Grüße aus Köln: ünïcödé ✓ — ça va?",
    )
    msg.set_content("Grüße,\nJürgen\n\n" + "€ " * 30 + "\n")
    return msg


def _eight_bit(**kw: Any) -> Callable[[], EmailMessage]:
    def build() -> EmailMessage:
        msg = _message(From="a@example.org", To="b@example.org", Subject="8bit")
        msg.set_content("Ünïcode body\nsecond line é\n", cte="8bit")
        return msg

    return build


def _alternative() -> EmailMessage:
    msg = _message(
        From="Alice <alice@example.org>",
        To="Bob <bob@example.org>",
        Subject="Plain and HTML",
    )
    msg.set_content("Hello Bob,\n\n" + LOREM * 3)
    msg.add_alternative(
        "<html><body><p>Hello <b>Bob</b>,</p><p>" + LOREM * 3 + "</p></body></html>",
        subtype="html",
    )
    msg.set_boundary("=====alt-boundary=====")
    return msg


def _attachments() -> EmailMessage:
    msg = _message(
        From="reports@example.org",
        To="finance@example.org",
        Cc="Audit <audit@example.org>",
        Subject="Monthly report with attachments",
    )
    msg.set_content("See the attached files.\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
    msg.add_attachment(
        "Résumé, ligne 1\nligne 2\n", subtype="plain", filename="résumé café.txt"
    )
    msg.add_attachment(
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        maintype="image",
        subtype="png",
        filename="a-rather-long-file-name-for-an-image-that-needs-folding-"
        "in-its-content-disposition-header.png",
    )
    msg.set_boundary("mixed-boundary-1")
    return msg


def _random_boundary() -> EmailMessage:
    msg = _alternative()
    del msg["Content-Type"]
    msg["Content-Type"] = "multipart/alternative"
    return msg


def _nested() -> EmailMessage:
    inner = _alternative()
    msg = _message(From="a@example.org", To="b@example.org", Subject="Forwarded")
    msg.set_content("Forwarding the message below.\n")
    msg.add_attachment(inner)
    msg.set_boundary("outer-boundary")
    return msg


def _long_headers() -> EmailMessage:
    msg = _message(
        From="Newsletter Department of a Very Long Organisation Name "
        "<newsletter@example.org>",
        To=", ".join(f"Recipient Number {n} <r{n}@example.org>" for n in range(12)),
        Subject="A subject that goes on and on " * 6,
        References=" ".join(f"<id{n}.{'x' * 20}@example.org>" for n in range(8)),
        In_Reply_To="<id7.xxxxxxxxxxxxxxxxxxxx@example.org>",
        X_Long_Token="token-" + "a" * 120,
        X_Mailer="mailstrom corpus",
    )
    msg.set_content("Long headers.\n")
    return msg


def _recipients() -> EmailMessage:
    msg = _message(
        From="a@example.org",
        To="b@example.org, C <c@Example.ORG>",
        Cc="c@example.org, d@example.org",
        Bcc="hidden@example.org, B@example.org, b@EXAMPLE.org",
        Subject="Many recipients",
    )
    msg.set_content("To, Cc and Bcc.\n")
    return msg


def _dated() -> EmailMessage:
    msg = _recipients()
    msg["Date"] = "Tue, 01 Jan 2030 10:00:00 +0100"
    msg["Message-ID"] = "<given.1@example.org>"
    return msg


def _odd_message_id() -> EmailMessage:
    msg = _simple()
    msg["Message-ID"] = "  <not-a-msg-id>  (comment)"
    return msg


def _smtputf8() -> EmailMessage:
    msg = _message(
        From="Jürgen <jürgen@example.org>",
        To="用户@例子.广告, ünïcode@exämple.org",
        Subject="SMTPUTF8",
    )
    msg.set_content("Addresses in UTF-8.\n")
    return msg


def _idn() -> EmailMessage:
    msg = _message(From="a@exämple.org", To="Bö <b@bücher.example>", Subject="IDN")
    msg.set_content("An IDN domain.\n")
    return msg


def _group() -> EmailMessage:
    msg = _message(
        From="a@example.org",
        To=Group(
            "Team",
            [Address("One", "one", "example.org"), Address("", "two", "example.org")],
        ),
        Cc="undisclosed-recipients:;",
        Subject="Groups",
    )
    msg.set_content("Group syntax.\n")
    return msg


def _long_body_line() -> EmailMessage:
    msg = _message(From="a@example.org", To="b@example.org", Subject="Long line")
    msg.set_content("start " + "y" * 1200 + "\nend\n", cte="8bit")
    return msg


def _crlf_body() -> EmailMessage:
    msg = _message(From="a@example.org", To="b@example.org", Subject="Line ends")
    msg.set_content("a\r\nb\rc\nd\n.starts with a dot\n..two\n")
    return msg


def _no_trailing_newline() -> EmailMessage:
    msg = _message(From="a@example.org", To="b@example.org", Subject="No newline")
    msg.set_payload("no newline at the end")
    return msg


def _from_line_body() -> EmailMessage:
    msg = _message(From="a@example.org", To="b@example.org", Subject="From lines")
    msg.set_content("Hello\nFrom here on\n>From there\n")
    return msg


def _tls_optional() -> EmailMessage:
    msg = _simple()
    msg["TLS-Required"] = "No"
    return msg


def _encoded_newline_subject() -> EmailMessage:
    msg = _message(From="a@example.org", To="b@example.org")
    msg["Subject"] = "=?utf-8?q?hello=0D=0ABcc:_evil@example.org?="
    msg.set_content("x\n")
    return msg


def _duplicate_from() -> Message:
    msg = Message()
    msg["From"] = "a@example.org"
    msg["From"] = "other@example.org"
    msg["To"] = "b@example.org"
    msg.set_payload("x\n")
    return msg


def _no_recipients() -> EmailMessage:
    msg = _message(From="a@example.org", Subject="nobody")
    msg.set_content("x\n")
    return msg


def _compat32() -> Message:
    msg = MIMEMultipart(boundary="compat-boundary")
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = "compat32"
    msg.attach(MIMEText("Hello in compat32.\n", "plain", "utf-8"))
    msg.attach(MIMEApplication(PDF[:300], "octet-stream", Name="x.bin"))
    return msg


def _parsed(data: bytes) -> Callable[[], EmailMessage]:
    def build() -> EmailMessage:
        parsed: EmailMessage = message_from_bytes(data, policy=policy.default)  # type: ignore[assignment]
        return parsed

    return build


RAW = (
    b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
    b"Subject: raw\r\n\r\nHello.\r\n.dot line\r\n"
)
RAW_8BIT = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9 cr\xc3\xa8me\r\n"
)
RAW_LF = b"From: a@example.org\nTo: b@example.org\nSubject: lf\n\nline one\nline two\n"
RAW_BARE_CR = b"From: a@example.org\rTo: b@example.org\r\nSubject: x\r\n\r\nbody\r\n"
RAW_BARE_LF = b"From: a@example.org\r\nTo: b@example.org\nSubject: x\r\n\r\nbody\r\n"
RAW_8BIT_HEADER = (
    b"From: J\xc3\xbcrgen <a@example.org>\r\nTo: b@example.org\r\n"
    b"Subject: gr\xc3\xbc\xc3\x9fe\r\n\r\nbody\r\n"
)
RAW_BCC = (
    b"From: a@example.org\r\nTo: b@example.org\r\nBcc: c@example.org\r\n"
    b"Subject: bcc\r\n\r\nbody\r\n"
)
NEWLINE_NAME = (
    b"From: a@example.org\r\nTo: =?utf-8?q?Bob=0D=0ABcc=3A_x?= <bob@example.org>\r\n"
    b"Subject: display name\r\n\r\nbody\r\n"
)
NEWLINE_PARAMETER = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: parameter\r\n"
    b"Content-Type: text/plain; name*=utf-8''a%0D%0Ab\r\n\r\nbody\r\n"
)
RAW_MBOX = b"From a@example.org Mon Jan  1 00:00:00 2024\r\n" + RAW


def corpus() -> list[Entry]:
    """Every entry: a name, a function making the message afresh, and the
    keyword arguments of ``Preparer.prepare``."""
    entries: list[Entry] = [
        ("simple", _simple, {}),
        ("non-ascii", _non_ascii, {}),
        ("8bit body", _eight_bit(), {}),
        ("8bit body, 8bit allowed", _eight_bit(), {"allow_8bit": True}),
        ("non-ascii, 8bit allowed", _non_ascii, {"allow_8bit": True}),
        ("alternative", _alternative, {}),
        ("attachments", _attachments, {}),
        ("attachments, 8bit allowed", _attachments, {"allow_8bit": True}),
        ("random boundary", _random_boundary, {}),
        ("nested message", _nested, {}),
        ("long headers", _long_headers, {}),
        ("recipients and bcc", _recipients, {}),
        ("date and message-id given", _dated, {}),
        ("odd message-id", _odd_message_id, {}),
        ("smtputf8", _smtputf8, {}),
        ("smtputf8, 8bit allowed", _smtputf8, {"allow_8bit": True}),
        ("idn", _idn, {}),
        ("group", _group, {}),
        ("long body line", _long_body_line, {}),
        ("long body line, 8bit allowed", _long_body_line, {"allow_8bit": True}),
        ("body line ends and dots", _crlf_body, {}),
        ("no trailing newline", _no_trailing_newline, {}),
        ("from lines in the body", _from_line_body, {}),
        ("tls-required no", _tls_optional, {}),
        ("require tls", _simple, {"require_tls": True}),
        (
            "envelope given",
            _recipients,
            {"mail_from": "bounce@example.org", "rcpt_to": ["x@example.org"]},
        ),
        ("null sender", _simple, {"mail_from": "", "allow_null_sender": True}),
        ("given message id", _simple, {"message_id": "chosen.1@example.org"}),
        ("default from", _no_recipients, {"rcpt_to": ["b@example.org"]}),
        ("encoded newline in subject", _encoded_newline_subject, {}),
        ("newline in display name", _parsed(NEWLINE_NAME), {}),
        ("newline in parameter", _parsed(NEWLINE_PARAMETER), {}),
        ("two from headers", _duplicate_from, {}),
        ("no recipients", _no_recipients, {}),
        ("compat32", _compat32, {}),
        ("parsed bytes object", _parsed(RAW_8BIT), {}),
        ("parsed bytes object, 8bit allowed", _parsed(RAW_8BIT), {"allow_8bit": True}),
        ("parsed 8bit header object", _parsed(RAW_8BIT_HEADER), {}),
    ]
    for name, data in [
        ("raw", RAW),
        ("raw 8bit", RAW_8BIT),
        ("raw lf", RAW_LF),
        ("raw bare cr", RAW_BARE_CR),
        ("raw bare lf", RAW_BARE_LF),
        ("raw 8bit header", RAW_8BIT_HEADER),
        ("raw bcc", RAW_BCC),
        ("raw mbox", RAW_MBOX),
        ("raw newline in display name", NEWLINE_NAME),
        ("raw newline in parameter", NEWLINE_PARAMETER),
    ]:
        entries.append((name, lambda data=data: data, {}))
        entries.append(
            (
                name + " as str",
                lambda data=data: data.decode("utf-8", "surrogateescape"),
                {},
            )
        )
    entries.append(("raw 8bit, 8bit allowed", lambda: RAW_8BIT, {"allow_8bit": True}))
    return entries


def _preparer(name: str, kw: dict[str, Any]) -> Preparer:
    rng = random.Random(name)
    default_from = (
        "Default Sender <default@example.org>" if name == "default from" else None
    )
    return Preparer(
        HELO,
        allow_8bit=kw.pop("allow_8bit", False),
        clock=lambda: CLOCK,
        message_ids=MessageIds(HELO, rng),
        default_from=default_from,
    )


def outcomes() -> Iterator[tuple[str, dict[str, Any]]]:
    """Prepare every entry of the corpus; yield its name and what came out."""
    for name, build, given in corpus():
        kw = dict(given)
        preparer = _preparer(name, kw)
        random.seed(name)  # the email package draws multipart boundaries from it
        try:
            prepared = preparer.prepare(build(), **kw)  # type: ignore[arg-type]
        except InvalidMessageError as exc:
            yield name, {"error": [type(exc).__name__, exc.field, str(exc)]}
        except ValueError as exc:  # refused by the email package while building
            yield name, {"error": [type(exc).__name__, None, str(exc)]}
        else:
            yield (
                name,
                {
                    "message_id": prepared.message_id,
                    "mail_from": prepared.mail_from,
                    "recipients": list(prepared.recipients),
                    "smtputf8": prepared.smtputf8,
                    "eight_bit": prepared.eight_bit,
                    "require_tls": prepared.require_tls,
                    "tls_optional": prepared.tls_optional,
                    "data": base64.b64encode(prepared.data).decode("ascii"),
                },
            )


def python_version() -> str:
    """The Python the outcomes are made with, recorded beside them: another
    release's email package may fold headers its own way."""
    return ".".join(map(str, sys.version_info[:3]))


if __name__ == "__main__":
    found = {"python": python_version(), "outcomes": dict(outcomes())}
    json.dump(found, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
