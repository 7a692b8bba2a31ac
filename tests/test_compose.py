"""compose(): a message from addresses, a subject, text, HTML and files, in
the shapes mail readers expect, ready for send_email()."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from support.smtpd import SmtpServerFactory

from mailstrom_py import (
    Config,
    DeliveryResult,
    InvalidMessageError,
    Mailstrom,
    RelayConfig,
    compose,
)
from mailstrom_py.message import Preparer

HELO = "app.example.org"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def prepared(message: EmailMessage, **options: str) -> EmailMessage:
    """The message as the preparer sends it, parsed again."""
    email = Preparer(HELO, **options).prepare(message)  # type: ignore[arg-type]
    parsed = message_from_bytes(email.data, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_a_text_body_alone_is_text_plain() -> None:
    """With text only the message is one text/plain part with the headers given."""
    message = compose("bob@example.org", "Hello", text="Hi Bob.", from_="a@example.org")
    assert message.get_content_type() == "text/plain"
    assert message["To"] == "bob@example.org"
    assert message["Subject"] == "Hello"
    assert prepared(message).get_content().rstrip() == "Hi Bob."


def test_an_html_body_alone_is_text_html() -> None:
    """With HTML only the message is one text/html part."""
    message = compose("bob@example.org", "Hello", html="<p>Hi</p>", from_="a@x.org")
    assert message.get_content_type() == "text/html"


def test_text_and_html_are_alternatives_text_first() -> None:
    """With both bodies the message is multipart/alternative, plain text
    first and HTML last (RFC 2046 §5.1.4: the preferred form last)."""
    message = compose(
        ["bob@example.org", "Carol <carol@example.org>"],
        "Hello",
        text="Hi.",
        html="<p>Hi.</p>",
        from_="a@example.org",
    )
    sent = prepared(message)
    assert sent.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in sent.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert sent["To"] == "bob@example.org, Carol <carol@example.org>"


def test_neither_body_gives_an_empty_text_part() -> None:
    """Without text or HTML the body is an empty text/plain part."""
    message = compose("bob@example.org", "Files", from_="a@example.org")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == ""


def test_attachments_from_paths_and_triples_arrive_byte_for_byte(
    tmp_path: Path,
) -> None:
    """Files named by path and (filename, bytes, mimetype) triples follow the
    body in a multipart/mixed, each with its name, its type (guessed from the
    name where not given) and its exact bytes."""
    report = tmp_path / "report.csv"
    report.write_bytes(b"a,b\r\n1,2\r\n")
    message = compose(
        "bob@example.org",
        "Files",
        text="See attached.",
        html="<p>See attached.</p>",
        attachments=[
            report,
            ("logo.png", PNG, "image/png"),
            ("data.bin", b"\0\1\2", None),
            ("notes", b"plain", "text/plain"),
        ],
        from_="a@example.org",
    )
    sent = prepared(message)
    assert sent.get_content_type() == "multipart/mixed"
    body, *files = sent.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    found = [
        (f.get_filename(), f.get_content_type(), f.get_payload(decode=True))
        for f in files
    ]
    assert found == [
        ("report.csv", "text/csv", b"a,b\r\n1,2\r\n"),
        ("logo.png", "image/png", PNG),
        ("data.bin", "application/octet-stream", b"\0\1\2"),
        ("notes", "text/plain", b"plain"),
    ]


def test_bcc_recipients_get_it_without_the_header() -> None:
    """Bcc addresses are envelope recipients, and the Bcc header is not sent."""
    message = compose(
        "bob@example.org",
        "Hi",
        text="x",
        cc="carol@example.org",
        bcc=["dave@example.org"],
        from_="a@example.org",
    )
    email = Preparer(HELO).prepare(message)
    assert email.recipients == (
        "bob@example.org",
        "carol@example.org",
        "dave@example.org",
    )
    assert b"dave@" not in email.data
    assert b"\nBcc:" not in email.data


def test_reply_to_and_extra_headers_are_set() -> None:
    """reply_to becomes Reply-To, and headers are added as given."""
    message = compose(
        "bob@example.org",
        "Hi",
        text="x",
        from_="a@example.org",
        reply_to="help@example.org",
        headers={"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@example.org>"},
    )
    sent = prepared(message)
    assert sent["Reply-To"] == "help@example.org"
    assert sent["X-Campaign"] == "spring"
    assert sent["List-Unsubscribe"] == "<mailto:u@example.org>"


def test_without_from_the_default_sender_fills_it_in() -> None:
    """A composed message without from_ gets the mailer's default_from."""
    message = compose("bob@example.org", "Hi", text="x")
    assert "From" not in message
    sent = prepared(message, default_from="App <noreply@example.org>")
    assert sent["From"] == "App <noreply@example.org>"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"subject": "Hi\r\nBcc: eve@example.org"}, "Subject"),
        ({"headers": {"X-Note": "a\nb"}}, "X-Note"),
        ({"attachments": [("a.txt", b"x", "text")]}, "attachments"),
        ({"attachments": [("a.txt", "not bytes", "text/plain")]}, "attachments"),
    ],
)
def test_bad_input_is_an_invalid_message_error(
    arguments: dict[str, object], field: str
) -> None:
    """A line break in a header, a mimetype that is not type/subtype or content
    that is not bytes raises InvalidMessageError naming the field."""
    given: dict[str, object] = {"to": "bob@example.org", "subject": "Hi", **arguments}
    with pytest.raises(InvalidMessageError) as info:
        compose(**given)  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    """An attachment path that cannot be read raises the OSError that says why."""
    with pytest.raises(FileNotFoundError):
        compose("b@example.org", "Hi", attachments=[tmp_path / "absent.pdf"])


def test_a_composed_message_is_delivered_intact(
    smtp_server: SmtpServerFactory,
) -> None:
    """Sent through a Mailstrom to a loopback server, the composed message
    arrives with both bodies and the attachment's exact bytes."""
    server = smtp_server()
    config = Config(
        helo_name=HELO,
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        default_from="App <noreply@example.org>",
    )
    message = compose(
        "bob@example.org",
        "Report",
        text="Grüße, see attached.",
        html="<p>Grüße, see attached.</p>",
        attachments=[("logo.png", PNG, "image/png")],
    )
    with Mailstrom(config) as mailer:
        message_id = mailer.send_email(message)
        status = mailer.wait(message_id, timeout=20)
    assert status.recipients[0].result is DeliveryResult.DELIVERED
    [received] = server.handler.messages
    assert received.mail_from == "noreply@example.org"
    got = message_from_bytes(received.data, policy=default)
    assert isinstance(got, EmailMessage)
    text = got.get_body(("plain",))
    html = got.get_body(("html",))
    assert text is not None and text.get_content().strip() == "Grüße, see attached."
    assert html is not None and "Grüße" in html.get_content()
    [logo] = got.iter_attachments()
    assert logo.get_payload(decode=True) == PNG
