"""The quick ways of preparing a message give exactly what the general ways give.

Clean bytes and str take the fast path, without the email package
(mailstrom_py.message.fastpath), beside the full path (mailstrom_py.message.fullpath);
header objects that fit on their line skip the folding algorithm, and a single text
part skips the second parse (mailstrom_py.message.serialise). Each is compared with
the general way.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import io
import re
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.generator import BytesGenerator
from email.headerregistry import (
    Address,
    AddressHeader,
    Group,
    HeaderRegistry,
    UnstructuredHeader,
)
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from typing import Any

import pytest
from hypothesis import event, example, given, reject, settings
from hypothesis import strategies as st

from mailstrom_py.errors import InvalidMessageError
from mailstrom_py.message import PreparedEmail, prepare_email
from mailstrom_py.message.body import has_long_line
from mailstrom_py.message.completion import MessageIds, given_message_id
from mailstrom_py.message.fastpath import prepare_fast
from mailstrom_py.message.fullpath import prepare_full
from mailstrom_py.message.parsing import (
    CachingHeaderRegistry,
    SharedHeaderRegistry,
    reading_policy,
)
from mailstrom_py.message.serialise import (
    FATAL_DEFECTS,
    SMTP,
    fitting_line,
    serialise,
    single_text_part,
)

HELO = "mx.example.org"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
DEFAULTS: dict[str, Any] = {
    "helo_name": HELO,
    "mail_from": None,
    "rcpt_to": None,
    "allow_8bit": False,
    "allow_null_sender": False,
    "now": NOW,
    "message_id": None,
}
GENERATED_ID = re.compile(r"[0-9a-f]{32}@")

Outcome = PreparedEmail | tuple[str | None, str]


def outcome(
    prepare: Callable[..., PreparedEmail], message: object, **kw: Any
) -> Outcome:
    """The prepared message, or the field and text of the error raised."""
    try:
        return prepare(message, **{**DEFAULTS, **kw})
    except InvalidMessageError as exc:
        return (exc.field, str(exc))


def path_arguments(
    helo_name: str, message_id: str | None, now: datetime | None, **kw: Any
) -> dict[str, Any]:
    """The arguments of one path, from those of prepare_email(), as a Preparer
    gives them."""
    ids = MessageIds(helo_name)
    kw["new_message_id"] = (
        ids.new if message_id is None else lambda: given_message_id(message_id)
    )
    kw["now"] = now if now is not None else datetime.now(UTC)
    return kw


def slow(message: object, **kw: Any) -> Outcome:
    """The outcome of the full path alone, the reference."""
    return outcome(
        lambda m, **k: prepare_full(m, CachingHeaderRegistry(), **path_arguments(**k)),
        message,
        **kw,
    )


def fast_is_taken(message: bytes | str, **kw: Any) -> bool:
    """Whether the fast path accepts *message* with these arguments.

    It declines what it is unsure of, and refuses a header line split by a bare
    CR or LF itself.
    """
    arguments = {**DEFAULTS, **kw}
    arguments.pop("allow_8bit")
    try:
        clean = prepare_fast(
            message, CachingHeaderRegistry(), **path_arguments(**arguments)
        )
    except InvalidMessageError:
        return False
    return clean is not None


def same_id(fast: Outcome, full: Outcome) -> Outcome:
    """Give *fast* the id *full* generated, when both generated a random one."""
    if not isinstance(fast, PreparedEmail) or not isinstance(full, PreparedEmail):
        return fast
    ids = fast.message_id, full.message_id
    if not all(GENERATED_ID.match(i) for i in ids):
        return fast
    data = fast.data.replace(ids[0].encode(), ids[1].encode())
    return dataclasses.replace(fast, message_id=ids[1], data=data)


PRINTABLE = [chr(c) for c in range(0x20, 0x7F) if chr(c) != "="] + ["\t"]
TEXT = st.text(st.sampled_from(PRINTABLE), max_size=90)
ODD_TEXT = st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=60)
ODD_SUBJECTS = ["Grüße", "=?utf-8?q?x=0Ay?=", "a*=b", "x" * 989, "x" * 990, "w" * 1200]
ODD_SUBJECTS += ["a " + "x" * 993]  # folded, a continuation line too long to keep
LOCALS = ["bob", "carol.x", "a+tag", "o'neil", '"john doe"', '"john"', "postmaster"]
ODD_LOCALS = ['"a\\"b"', "jörg", "a..b", "x" * 65, '"a@b"', "a\\b"]
DOMAINS = ["example.org", "Example.ORG", "mail.example.test", "[192.0.2.1]", "b"]
ODD_DOMAINS = ["bücher.example", "exa_mple.org", "[IPv6:2001:db8::1]", "x."]
NAMES = ["Bob", "J. Smith", '"Smith, John"', '"a <b>"', "(team) Bob", '""']
ODD_NAMES = ["Jörg", "=?utf-8?q?J=C3=B6rg?=", '"Q \\" x"', "Smith, John", "@"]
IDS = ["<abc.123@example.org>", " <x@y.test>  ", "<a@[192.0.2.1]>", "<a.b.c@d>"]
ODD_IDS = [
    "abc@example.org",
    "<a@b> <c@d>",
    "<>",
    "<abc@example.org",
    f"<{'r' * 999}@x>",
]
TYPES = ["text/plain", 'text/plain; charset="us-ascii"', "TEXT/HTML; charset=utf-8"]
TYPES += ["text/plain; format=flowed;", 'text/plain; charset="us-ascii"; delsp=no']
ODD_TYPES = ["application/json", 'multipart/mixed; boundary="b"', "message/rfc822"]
ODD_TYPES += ["text/plain; name*=utf-8''a", "text/plain; name*=utf-8''a%0Ab"]
ODD_TYPES += ["text/plain (comment)", "text"]
ENCODINGS = ["7bit", "8bit", "Quoted-Printable", "base64", " binary "]
ODD_ENCODINGS = ["x-uuencode", "7bit (comment)"]
LINES = ["", ".", "..", ".hidden", "From me", "--b", "x" * 998, "a=b", " indented"]
ODD_LINES = ["x" * 999, "caf\xe9", "nul\x00", "\x0c", "a\rb", "a\nb"]
ODD_FIELDS = ["oops", " lead", ":x", "X Bad: y", "From x", "a:\x01", "X-\x7f: y"]
SEPARATORS = [": ", ":", ":  ", ":\t", ": \t"]
FIELD_NAMES = st.from_regex(r"X-[!-9;-~]{1,12}", fullmatch=True)
ONE_IN_TWELVE = [False] * 11 + [True]


def rarely(draw: st.DrawFn, clean: bool) -> bool:
    """Whether to add something odd: never in a clean message, else one time in 12."""
    return not clean and draw(st.sampled_from(ONE_IN_TWELVE))


def pick(draw: st.DrawFn, clean: bool, usual: list[str], odd: list[str]) -> str:
    """Draw from *usual*, or rarely from *odd*."""
    return draw(st.sampled_from(odd if rarely(draw, clean) else usual))


@st.composite
def texts(draw: st.DrawFn, clean: bool) -> str:
    """Printable text, or rarely control characters, 8-bit text or an encoded word."""
    if rarely(draw, clean):
        return draw(ODD_TEXT | st.sampled_from(ODD_SUBJECTS))
    return draw(TEXT)


@st.composite
def mailboxes(draw: st.DrawFn, clean: bool) -> str:
    """One mailbox: bare, in angle brackets, with a display name or a comment."""
    local = pick(draw, clean, LOCALS, ODD_LOCALS)
    address = f"{local}@{pick(draw, clean, DOMAINS, ODD_DOMAINS)}"
    form = draw(st.integers(0, 4 if clean else 5))
    if form == 0:
        return address
    if form == 1:
        return f"<{address}>"
    if form == 5:
        return f"{address} (comment)"
    return f"{pick(draw, clean, NAMES, ODD_NAMES)} <{address}>"


@st.composite
def address_lists(draw: st.DrawFn, clean: bool) -> str:
    """A list of mailboxes, now and then in a group or with an empty group."""
    boxes = draw(st.lists(mailboxes(clean), min_size=1, max_size=4))
    joined = draw(st.sampled_from([", ", ",", " , "])).join(boxes)
    if draw(st.integers(0, 6)) == 0:
        return f"{joined}, undisclosed-recipients:;"
    if draw(st.integers(0, 6)) == 0:
        return f"Team: {joined};"
    return joined


def folded(draw: st.DrawFn, value: str, clean: bool) -> str:
    """Fold *value* at some of its blanks, as a sender may.

    A tab after the line break would turn a space into a tab, which an address
    in quotes does not allow: only odd messages have it.
    """
    if not draw(st.booleans()):
        return value
    pieces = value.split(" ")
    gaps = st.sampled_from([" ", " ", "\r\n "] + ([] if clean else ["\r\n\t"]))
    return pieces[0] + "".join(draw(gaps) + piece for piece in pieces[1:])


def optional_fields(clean: bool) -> dict[str, st.SearchStrategy[str]]:
    """The values each optional header field may take."""

    def one_of(usual: list[str], odd: list[str]) -> st.SearchStrategy[str]:
        return st.sampled_from(usual + ([] if clean else odd[:1] * 3 + odd))

    references = st.sampled_from([IDS[0], f"<{'x' * 70}@example.org>", IDS[3]])
    return {
        "Subject": texts(clean),
        "Cc": address_lists(clean),
        "bcc": address_lists(clean),
        "Reply-To": address_lists(clean),
        "Sender": mailboxes(clean),
        "Resent-From": mailboxes(clean),
        "Resent-Bcc": address_lists(clean),
        "Date": st.sampled_from(["Mon, 06 May 2024 07:08:09 +0000", "", "whenever"]),
        "Message-ID": one_of(IDS, ODD_IDS),
        "References": st.lists(references, min_size=1, max_size=4).map(" ".join),
        "MIME-Version": st.just("1.0"),
        "Content-Type": one_of(TYPES, ODD_TYPES),
        "Content-Transfer-Encoding": one_of(ENCODINGS, ODD_ENCODINGS),
        "X-Mailer": texts(clean),
        "keywords": st.just("a, b: c"),
    }


@st.composite
def header_blocks(draw: st.DrawFn, clean: bool) -> list[str]:
    """From and To, then a random choice of other fields, in a random order."""
    optional = optional_fields(clean)
    chosen = draw(st.lists(st.sampled_from(sorted(optional)), unique=True))
    fields = [("From", draw(mailboxes(clean))), ("To", draw(address_lists(clean)))]
    fields += [(name, draw(optional[name])) for name in chosen]
    fields += draw(st.lists(st.tuples(FIELD_NAMES, TEXT), max_size=2))
    fields = draw(st.permutations(fields))
    if rarely(draw, clean):
        fields.append(draw(st.sampled_from(fields)))
    lines = [
        name + draw(st.sampled_from(SEPARATORS)) + folded(draw, value, clean)
        for name, value in fields
    ]
    if rarely(draw, clean):
        lines.insert(
            draw(st.integers(0, len(lines))), draw(st.sampled_from(ODD_FIELDS))
        )
    return lines


@st.composite
def messages(draw: st.DrawFn, clean: bool) -> bytes | bytearray | str:
    """A whole message: header block, body, line ends, and the type it comes as."""
    headers = draw(header_blocks(clean))
    body = draw(st.lists(st.sampled_from(LINES) | TEXT, max_size=12))
    if rarely(draw, clean):
        body.insert(draw(st.integers(0, len(body))), draw(st.sampled_from(ODD_LINES)))
    text = "\r\n".join([*headers, "", *body])
    if body and draw(st.booleans()):
        text += "\r\n"
    elif not body and not rarely(draw, clean):
        text += "\r\n"  # the empty line after the header block
    if rarely(draw, clean):
        end = draw(st.sampled_from(["\n", "\r"]))
        text = text.replace("\r\n", end, draw(st.integers(1, 3)))
    elif draw(st.booleans()):
        text = text.replace("\r\n", "\n")
    kind = draw(st.sampled_from(["bytes", "str", "bytearray"]))
    if kind == "str":
        return text
    data = text.encode("utf-8", "surrogateescape")
    return bytearray(data) if kind == "bytearray" else data


CLEAN_ARGUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "mail_from": st.sampled_from(["env@example.net", "jörg@example.de"]),
        "rcpt_to": st.sampled_from(
            [["x@example.net", "x@EXAMPLE.net"], ["ü@example.de"]]
        ),
        "allow_8bit": st.booleans(),
        "allow_null_sender": st.booleans(),
        "now": st.sampled_from([NOW, NOW.astimezone(timezone(timedelta(hours=-5)))]),
        "message_id": st.just("fixed.1@example.org"),
        "helo_name": st.just("bücher.example"),
    },
)
BAD_ARGUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "mail_from": st.sampled_from(["", "<>", "a b@c"]),
        "allow_null_sender": st.booleans(),
        "rcpt_to": st.just([]),
        "message_id": st.just("not an id"),
        "helo_name": st.just("bad_helo"),
    },
)
# Mostly valid arguments, so that the message decides which path is taken.
ARGUMENTS = st.integers(0, 3).flatmap(
    lambda n: BAD_ARGUMENTS if n == 0 else CLEAN_ARGUMENTS
)
HEAD = "From: a@example.org\nTo: b@example.org\n"
BENCHMARK = (
    "From: bench@example.test\r\nTo: sink3@example.test\r\nSubject: benchmark 3\r\n\r\n"
    + ("x" * 70 + "\r\n") * 28
).encode()


class TestSameResult:
    @settings(max_examples=400, deadline=None)
    @given(messages(clean=True) | messages(clean=False), ARGUMENTS)
    @example(BENCHMARK, {})
    @example(b"From: a@example.org\r\nTo: b@example.org\r\n", {})
    @example(b"From: a@example.org\r\nTo: b@example.org\r\n\r\nx", {})
    @example("From: a@example.org\nTo: b@example.org\n\nhi\n", {})
    @example(HEAD + "Content-Type: application/json\n\n{}\n", {})
    @example(HEAD + 'Content-Type: multipart/mixed; boundary="b"\n\nx\n', {})
    @example(HEAD + "Content-Type: text/plain; name*=utf-8''a%0Ab\n\n", {})
    @example(HEAD + "Subject: a\n " + "x" * 993 + "\n\n", {})
    @example(HEAD + "Subject:" + "x" * 990 + "\n\n", {})
    def test_any_message_prepares_exactly_as_the_full_way(
        self, message: bytes | bytearray | str, arguments: dict[str, Any]
    ) -> None:
        """prepare_email() gives the full path's PreparedEmail, or raises its error."""
        taken = fast_is_taken(message, **arguments)
        event("fast path" if taken else "full path")
        full = slow(message, **arguments)
        assert same_id(outcome(prepare_email, message, **arguments), full) == full
        if taken:
            assert isinstance(full, PreparedEmail)

    @settings(max_examples=200, deadline=None)
    @given(messages(clean=True), CLEAN_ARGUMENTS)
    def test_clean_messages_take_the_fast_way(
        self, message: bytes | bytearray | str, arguments: dict[str, Any]
    ) -> None:
        """Every clean message takes the fast path, and it gives the full path's result."""
        assert fast_is_taken(message, **arguments)
        full = slow(message, **arguments)
        assert isinstance(full, PreparedEmail)
        assert same_id(outcome(prepare_email, message, **arguments), full) == full


COMMON = [
    BENCHMARK,
    BENCHMARK.decode(),
    bytearray(BENCHMARK),
    "From: alice@example.org\nTo: bob@example.org\n\nhi\n",
    b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>, carol@example.org\r\n"
    b'Cc: "Smith, John" <john@example.org>\r\nBcc: secret@example.org\r\n'
    b"Subject: a subject that goes on\r\n and on\r\nDate: Mon, 06 May 2024 07:08:09 +0000"
    b"\r\nMessage-ID: <abc.123@example.org>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="us-ascii"\r\n'
    b"Content-Transfer-Encoding: 7bit\r\n\r\n.\r\n..\r\nFrom me\r\n",
    b"From: a@example.org\r\nTo: Team: b@example.org, c@example.org;\r\n"
    b"In-Reply-To: <x@example.org>\r\nReferences: <w@example.org> <x@example.org>\r\n"
    b"X-Mailer: something:  with colons\r\n\r\n",
]
FALLBACKS = {
    "8-bit body": b"From: a@example.org\r\nTo: b@example.org\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n",
    "8-bit header": "From: a@example.org\nTo: Jörg <j@example.org>\n\nhi\n",
    "encoded word": b"From: a@example.org\r\nTo: b@example.org\r\nSubject: =?utf-8?q?x?=\r\n",
    "bare LF": b"From: a@example.org\r\nTo: b@example.org\r\n\r\none\ntwo\r\n",
    "bare CR": b"From: a@example.org\r\nTo: b@example.org\r\n\r\none\rtwo\r\n",
    "NUL": b"From: a@example.org\r\nTo: b@example.org\r\n\r\nnul\x00\r\n",
    "long line": b"From: a@example.org\r\nTo: b@example.org\r\n\r\n" + b"x" * 999,
    "multipart": b"From: a@example.org\r\nTo: b@example.org\r\nContent-Type: multipart/"
    b'mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n',
    "not text": b"From: a@example.org\r\nTo: b@example.org\r\n"
    b"Content-Type: application/json\r\n\r\n{}\r\n",
    "no colon": b"From: a@example.org\r\nTo: b@example.org\r\noops\r\n\r\nx\r\n",
    "two From": b"From: a@example.org\r\nFrom: c@example.org\r\nTo: b@example.org\r\n\r\n",
    "no body": b"From: a@example.org\r\nTo: b@example.org\r\n",
    "bad address": b"From: a@example.org\r\nTo: a..b@example.org\r\n\r\n",
    "bad Message-ID": b"From: a@example.org\r\nTo: b@example.org\r\nMessage-ID: <>\r\n\r\n",
}


class TestAcceptance:
    @pytest.mark.parametrize("message", COMMON)
    def test_common_shapes_take_the_fast_way(self, message: bytes | str) -> None:
        """Plain messages as applications write them take the fast path, unchanged."""
        assert fast_is_taken(message)
        full = slow(message)
        assert same_id(outcome(prepare_email, message), full) == full

    @pytest.mark.parametrize("message", FALLBACKS.values(), ids=FALLBACKS.keys())
    def test_anything_unusual_takes_the_full_way(self, message: bytes | str) -> None:
        """Input the fast path cannot vouch for goes the full path, errors included."""
        assert not fast_is_taken(message)
        full = slow(message)
        assert same_id(outcome(prepare_email, message), full) == full

    @pytest.mark.parametrize(
        ("message", "field"),
        [
            (
                b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\rBcc: c@x.org\r\n\r\n",
                "Subject",
            ),
            (
                b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\nBcc: c@x.org\r\n\r\n",
                "Subject",
            ),
            ("From: a@example.org\nTo: bob@exam\rX-Evil: 1ple.org\n\nhi\n", "To"),
            ("From: a@example.org\nTo: b@example.org\r\nSubject: Grüße\n\nhi\n", "To"),
        ],
    )
    def test_both_paths_refuse_a_header_line_split_by_a_bare_line_end(
        self, message: bytes | str, field: str
    ) -> None:
        """Each path checks the header section's line ends before reading anything."""
        arguments = {**DEFAULTS, "rcpt_to": ["b@example.org"]}
        arguments.pop("allow_8bit")
        with pytest.raises(InvalidMessageError, check=lambda e: e.field == field):
            prepare_fast(
                message, CachingHeaderRegistry(), **path_arguments(**arguments)
            )
        assert slow(message, rcpt_to=["b@example.org"])[0] == field  # type: ignore[index]

    @pytest.mark.parametrize("before", [0, 1, 3, 40])
    @pytest.mark.parametrize("filler", [1, 70, 997, 998])
    @pytest.mark.parametrize("longest", [998, 999, 1500])
    @pytest.mark.parametrize("ended", [True, False])
    def test_the_line_length_limit_holds_wherever_the_line_is(
        self, before: int, filler: int, longest: int, ended: bool
    ) -> None:
        """A body line of 999 octets or more sends the message the full way, at
        any place among lines of any length up to 998 (RFC 5322 §2.1.1), the
        last one without its CRLF too; one of 998 keeps it on the fast way."""
        body = (b"y" * filler + b"\r\n") * before + b"z" * longest
        body += b"\r\n" + b"y" * filler + b"\r\n" if ended else b""
        message = b"From: a@example.org\r\nTo: b@example.org\r\n\r\n" + body
        assert fast_is_taken(message) == (longest <= 998)
        full = slow(message)
        assert same_id(outcome(prepare_email, message), full) == full

    def test_fast_way_keeps_the_callers_octets(self) -> None:
        """Header lines and body go out as written; Bcc goes, Date and Message-ID come."""
        head = b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
        body = b".\r\n..x\r\n" + b"y" * 998 + b"\r\n"
        prepared = prepare_email(
            head + b"Bcc: c@example.org\r\n\r\n" + body,
            helo_name=HELO,
            now=NOW,
            message_id="m.1@example.org",
        )
        assert prepared.data == (
            head + b"Date: Mon, 06 May 2024 07:08:09 +0000\r\n"
            b"Message-ID: <m.1@example.org>\r\n\r\n" + body
        )
        assert prepared.recipients == ("bob@example.org", "c@example.org")

    @pytest.mark.parametrize("ending", [b"hi\r\n", b"hi", b""])
    def test_a_complete_header_section_goes_as_it_came(self, ending: bytes) -> None:
        """A message with Date and Message-ID, no Bcc, goes out octet for octet
        (its final line given a CRLF), as the full path gives it; the caller's
        bytes are not even copied when they need no CRLF."""
        message = (
            b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
            b"Date: Mon, 06 May 2024 07:08:09 +0000\r\n"
            b"Message-ID: <m.1@example.org>\r\n\r\n" + ending
        )
        assert fast_is_taken(message)
        prepared = prepare_email(message, helo_name=HELO, now=NOW)
        assert prepared.data == message + (b"\r\n" if ending == b"hi" else b"")
        assert prepared == slow(message)
        assert (prepared.data is message) == (ending != b"hi")

    def test_recipients_from_an_iterator_are_read_once(self) -> None:
        """A one-shot iterator serves whichever path prepares the message."""
        message = BENCHMARK.replace(b"Subject", b"Message-ID: <>\r\nSubject")
        recipients = ["x@example.net"]
        assert prepare_email(BENCHMARK, helo_name=HELO, rcpt_to=iter(recipients))
        with pytest.raises(
            InvalidMessageError, check=lambda e: e.field == "Message-ID"
        ):
            prepare_email(message, helo_name=HELO, rcpt_to=iter(recipients))


HEADER_TEXT = st.text(
    st.sampled_from([*PRINTABLE, "=", "é", "世", "\x0c", "\r", "\n"]), max_size=120
)
HEADER_VALUES: dict[str, st.SearchStrategy[str]] = {
    "From": mailboxes(clean=False),
    "To": address_lists(clean=False),
    "Subject": HEADER_TEXT | st.sampled_from(ODD_SUBJECTS),
    "X-Note": HEADER_TEXT,
    "Content-Type": st.sampled_from(TYPES + ODD_TYPES)
    | HEADER_TEXT.map(lambda text: f"text/plain; name={text!r}"),
    "Content-Disposition": HEADER_TEXT.map(
        lambda name: f"attachment; filename={name!r}"
    ),
    "Content-Transfer-Encoding": st.sampled_from(ENCODINGS + ODD_ENCODINGS),
    "MIME-Version": st.sampled_from(["1.0", "1.0 (x)", "2"]),
    "Message-ID": st.sampled_from(IDS + ODD_IDS),
    "Date": st.sampled_from(["Mon, 06 May 2024 07:08:09 +0000", "whenever"]),
}
POLICIES = st.builds(
    SMTP.clone, cte_type=st.sampled_from(["7bit", "8bit"]), utf8=st.booleans()
)


class TestQuickFold:
    @settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from(sorted(HEADER_VALUES)).flatmap(
            lambda name: st.tuples(st.just(name), HEADER_VALUES[name])
        ),
        POLICIES,
    )
    def test_quick_fold_equals_the_folding_algorithm(
        self, field: tuple[str, str], policy: EmailPolicy[Any]
    ) -> None:
        """A header object folds to the same octets with or without the quick line."""
        name, value = field
        try:
            header = policy.header_factory(name, value)
        except (ValueError, LookupError):
            reject()  # the email package cannot even build it; nothing to fold
        taken = fitting_line(header, policy.max_line_length) is not None
        event("quick" if taken else "general")

        def fold(folder: Callable[[str, Any], bytes]) -> bytes | str:
            try:
                return folder(name, header)
            except (ValueError, LookupError, TypeError) as exc:
                return type(exc).__name__

        general = fold(lambda n, h: EmailPolicy.fold_binary(policy, n, h))
        assert fold(policy.fold_binary) == general

    def test_application_headers_take_the_quick_line(self) -> None:
        """Headers as an application sets them fit, addresses included, and take
        the quick line, which is what the folding algorithm writes."""
        message = EmailMessage(policy=SMTP)
        message["From"] = Address("Alice Example", "alice", "example.org")
        message["To"] = "Bob <bob@example.org>, carol@example.org"
        message["Cc"] = [Address("", "dave", "example.org"), Address("É", "e", "x.org")]
        message["Subject"] = "Your order has shipped"
        message["Date"] = NOW
        message["Message-ID"] = "<m.1@example.org>"
        message.set_content("Hello.\n")
        for name, header in message.items():
            line = fitting_line(header, 78)
            if name == "Cc":  # a non-ASCII display name is an encoded word
                assert line is None
                continue
            assert line is not None, name
            assert line + "\r\n" == EmailPolicy.fold(SMTP, name, header)

    @pytest.mark.parametrize(
        "value",
        [
            '"Bob"  <bob@example.org>',
            "a@example.org (comment),b@example.org",
            "Team: a@example.org, b@example.org;",
            "undisclosed-recipients:;",
            Address("Alice Example", "alice", "example.org"),
            [Address("", "a", "example.org"), Address("B. C.", "b", "example.org")],
            Group("Team", [Address("One", "one", "example.org")]),
            Address("Zoë", "zoe", "example.org"),
            Address("x" * 80, "long", "example.org"),
        ],
    )
    def test_an_address_header_goes_as_written_not_as_its_str(
        self, value: object
    ) -> None:
        """An address header's str() is a standard form; the general fold writes
        its parse tree, what was written, and so does the quick line."""
        message = EmailMessage(policy=SMTP)
        message["To"] = value
        header = message["To"]
        for policy in (SMTP, SMTP.clone(utf8=True), SMTP.clone(cte_type="8bit")):
            general = EmailPolicy.fold_binary(policy, "To", header)
            assert policy.fold_binary("To", header) == general
        if value == '"Bob"  <bob@example.org>':
            assert str(header) == "Bob <bob@example.org>"
            assert fitting_line(header, 78) == 'To: "Bob"  <bob@example.org>'

    def test_a_date_that_does_not_parse_folds_to_nothing_either_way(self) -> None:
        """A Date header the email package cannot read is written empty, also here."""
        header = SMTP.header_factory("Date", "whenever")
        assert fitting_line(header, 78) is None
        assert SMTP.fold_binary("Date", header) == b"Date:\r\n"
        assert SMTP.fold_binary("Date", header) == EmailPolicy.fold_binary(
            SMTP, "Date", header
        )


BODY_TEXT = st.lists(
    st.sampled_from(["a", " ", ".", "\r", "\n", "\r\n", "é", "\udce9", "From "]),
    max_size=40,
).map("".join)


class TestBodyShortcuts:
    @settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from(["text/plain", "application/octet-stream", "multipart/mixed"]),
        BODY_TEXT,
        BODY_TEXT,
        st.sampled_from(["7bit", "8bit"]),
    )
    def test_a_body_is_written_as_the_generator_writes_it(
        self, content_type: str, body: str, epilogue: str, cte_type: str
    ) -> None:
        """A body's lines, written in one go, are the octets the email package's
        generator writes line by line, or fail as they fail there; so are a
        multipart's preamble and epilogue."""
        message = EmailMessage()
        message["From"] = "a@example.org"
        if content_type.startswith("multipart"):
            message["Content-Type"] = f'{content_type}; boundary="b"'
            part = EmailMessage()
            part.set_payload(body)
            message.attach(part)
            message.preamble, message.epilogue = body, epilogue
        else:
            message["Content-Type"] = content_type
            message.set_payload(body + epilogue)
        policy = SMTP.clone(cte_type=cte_type)

        def written(write: Callable[[], bytes]) -> bytes | str:
            try:
                return write()
            except InvalidMessageError as exc:
                return str(exc)

        general = io.BytesIO()

        def flatten() -> bytes:
            try:
                BytesGenerator(general, policy=policy).flatten(message, unixfrom=False)
            except UnicodeEncodeError as exc:
                raise InvalidMessageError(
                    f"the message cannot be serialised: {exc}"
                ) from exc
            data = general.getvalue()
            return data if data.endswith(b"\r\n") else data + b"\r\n"

        assert written(lambda: serialise(message, policy)) == written(flatten)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(0, 1100), st.sampled_from([b"\r\n", b"\r", b"\n", b""])
            ),
            max_size=4,
        )
    )
    def test_a_long_line_is_found_as_a_split_at_every_line_end_finds_it(
        self, lines: list[tuple[int, bytes]]
    ) -> None:
        """Splitting at LF first finds the same long lines as splitting at CRLF,
        CR and LF."""
        data = b"".join(b"x" * size + end for size, end in lines)
        split = re.split(rb"\r\n|\r|\n", data)
        assert has_long_line(data) is (max(map(len, split)) > 998)


class TestVerifyShortcut:
    @settings(max_examples=300, deadline=None)
    @given(messages(clean=True) | messages(clean=False))
    def test_one_text_part_is_read_as_the_email_package_reads_it(
        self, message: bytes | bytearray | str
    ) -> None:
        """When the shortcut names the fields, a full parse finds one part with them."""
        data = (
            message.encode("utf-8", "surrogateescape")
            if isinstance(message, str)
            else bytes(message)
        )
        if b"\r" not in data:
            data = data.replace(b"\n", b"\r\n")
        names = single_text_part(data)
        event("shortcut" if names is not None else "full parse")
        if names is not None:
            parsed = BytesParser(policy=SMTP).parsebytes(data)
            assert [[n.lower() for n in part] for part in parsed.walk()] == [names]
            assert not any(isinstance(d, FATAL_DEFECTS) for d in parsed.defects)

    @pytest.mark.parametrize(
        "head",
        [
            b'Content-Type: multipart/mixed; boundary="b"\r\n',
            b"Content-Type: message/rfc822\r\n",
            b"From nobody\r\n",
            b" continued\r\n",
            b"X-Caf\xc3\xa9: 1\r\n",
        ],
    )
    def test_anything_but_plain_fields_and_text_gets_a_full_parse(
        self, head: bytes
    ) -> None:
        """Parts, an envelope line, a stray continuation or 8-bit names are parsed."""
        assert single_text_part(head + b"From: a@example.org\r\n\r\nbody\r\n") is None


class TestHeaderRegistry:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("From", "Alice <alice@example.org>"),
            ("to", "a@example.org, Team: b@example.org;"),
            ("Date", "Mon, 06 May 2024 07:08:09 +0000"),
            ("Content-Type", 'text/plain; charset="utf-8"'),
            ("Message-ID", "<a@b>"),
            ("X-Anything", "=?utf-8?q?J=C3=B6rg?="),
        ],
    )
    def test_headers_are_parsed_as_the_default_registry_parses_them(
        self, name: str, value: str
    ) -> None:
        """Every registry made per message has the email package's default header
        classes, and parses a header to what a new HeaderRegistry gives."""
        reference = HeaderRegistry()(name, value)
        for registry in (CachingHeaderRegistry(), CachingHeaderRegistry()):
            header = registry(name, value)
            assert type(header).__mro__[1:] == type(reference).__mro__[1:]
            assert (str(header), header.defects) == (str(reference), reference.defects)
            assert registry(name, value) is header
        assert CachingHeaderRegistry()(name, value) is not header

    def test_each_kind_of_header_has_one_class_for_every_registry(self) -> None:
        """The class of a header is made once for its kind, as a HeaderRegistry
        makes it, not once for every header built."""
        first, second = CachingHeaderRegistry(), CachingHeaderRegistry()
        assert type(first("To", "a@example.org")) is type(second("Cc", "b@x.org"))
        assert first["Subject"] is second["subject"]
        assert first["Subject"].__bases__ == HeaderRegistry()["Subject"].__bases__
        assert first["X-Mine"] is first["X-Other"] is not first["Subject"]

    def test_preparing_keeps_no_header_class_of_the_callers(self) -> None:
        """A HeaderRegistry makes a class for every header; preparing a message
        keeps none of them alive, so a long-running sender does not grow."""
        message = EmailMessage()
        message["From"] = "a@example.org"
        message["To"] = "Bob <b@example.org>"
        message["Subject"] = "Hi"
        message.set_content("Hello.\n")
        classes = [weakref.ref(type(header)) for header in message.values()]
        prepare_email(message, helo_name=HELO, now=NOW)
        del message
        gc.collect()
        assert [ref() for ref in classes] == [None] * len(classes)

    def test_prepared_bytes_are_read_back_with_headers_shared_within_a_bound(
        self,
    ) -> None:
        """Reading prepared bytes back shares parsed headers between preparations,
        parsed as a new HeaderRegistry parses them, and keeps a bounded number."""
        policy = reading_policy("7bit", False)
        assert policy is reading_policy("7bit", False)
        factory = policy.header_factory
        assert isinstance(factory, SharedHeaderRegistry)
        value = 'text/plain; charset="utf-8"'
        header = factory("Content-Type", value)
        reference = HeaderRegistry()("Content-Type", value)
        assert (str(header), header.params) == (str(reference), reference.params)
        assert factory("Content-Type", value) is header
        for n in range(SharedHeaderRegistry.LIMIT + 1):
            factory("X-Count", str(n))
        assert factory("Content-Type", value) is not header
        assert (policy.cte_type, policy.utf8, policy.linesep) == ("7bit", False, "\r\n")

    def test_the_shared_map_of_header_classes_cannot_be_changed(self) -> None:
        """The map of header classes is shared by every registry: none changes it."""
        registry = CachingHeaderRegistry()
        with pytest.raises(TypeError):
            registry.map_to_type("x-mine", AddressHeader)
        assert type(CachingHeaderRegistry()("X-Mine", "a@b")).__mro__[1] is (
            UnstructuredHeader
        )


@st.composite
def email_messages(draw: st.DrawFn) -> EmailMessage:
    """An EmailMessage as applications build them: text, attachments, a forward."""
    message = EmailMessage()
    message["From"] = draw(mailboxes(clean=True))
    message["To"] = draw(address_lists(clean=True))
    message["Bcc"] = "hidden@example.org"
    message["Subject"] = draw(TEXT | st.just("Grüße"))
    message.set_content(draw(st.text(max_size=300) | st.just("x" * 1200 + "\n")))
    if draw(st.booleans()):
        content = draw(st.binary(max_size=200))
        message.add_attachment(content, maintype="application", subtype="octet-stream")
    if draw(st.booleans()):
        inner = EmailMessage()
        inner["Subject"] = "Grüße"
        inner.set_content(draw(st.text(max_size=100)))
        message.add_attachment(inner)
    return message


class TestPrivateCopy:
    @settings(max_examples=100, deadline=None)
    @given(email_messages(), st.booleans())
    def test_the_callers_message_is_untouched_and_prepares_alike(
        self, message: EmailMessage, allow_8bit: bool
    ) -> None:
        """Preparing leaves the caller's message as it was, and any copy prepares alike."""
        before = message.as_bytes()
        headers = [part.items() for part in message.walk()]
        snapshot = copy.deepcopy(message)
        arguments = {"allow_8bit": allow_8bit, "message_id": "m.1@example.org"}
        first = outcome(prepare_email, message, **arguments)
        assert message.as_bytes() == before
        assert [part.items() for part in message.walk()] == headers
        assert outcome(prepare_email, message, **arguments) == first
        assert outcome(prepare_email, snapshot, **arguments) == first
