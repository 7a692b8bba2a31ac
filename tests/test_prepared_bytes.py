"""Preparing a message gives the same bytes, envelope and errors as it always did.

The corpus (``support/prepcorpus.py``) is varied on purpose: EmailMessage objects
with non-ASCII headers and bodies, attachments, nested messages, long headers that
need folding, To/Cc/Bcc with duplicates, 8-bit bodies with and without
``allow_8bit``, SMTPUTF8 and IDN addresses, header injection through encoded words
and parameters, and the same shapes as bytes, str and compat32 messages. Its
outcomes were recorded (``support/prepcorpus.json``) from the library before its
preparation was made cheaper; every one must come out the same, byte for byte.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from support.prepcorpus import FIXTURE, corpus, outcomes

RECORDED: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_the_corpus_is_the_recorded_one() -> None:
    """Every entry has a recorded outcome, and nothing recorded is left out."""
    names = [name for name, _, _ in corpus()]
    assert len(set(names)) == len(names)
    assert sorted(names) == sorted(RECORDED["outcomes"])


@pytest.mark.parametrize(
    ("name", "found"), list(outcomes()), ids=[name for name, _, _ in corpus()]
)
def test_each_message_prepares_exactly_as_recorded(
    name: str, found: dict[str, Any]
) -> None:
    """The prepared bytes, envelope and flags, or the error, are those recorded.

    They were recorded with Python 3.11.7 and are the same with 3.11.2, 3.12.1
    and 3.13.0; another Python's email package may fold or word errors its own
    way, which this would show."""
    assert found == RECORDED["outcomes"][name], f"recorded with {RECORDED['python']}"


def test_the_corpus_covers_what_it_says() -> None:
    """The recorded outcomes include refusals, Bcc removal, SMTPUTF8, 8-bit data,
    folded headers and multipart messages, so the comparison pins each of them."""
    recorded = RECORDED["outcomes"]
    errors = [o["error"][1] for o in recorded.values() if "error" in o]
    assert {"Subject", "To", "Content-Type", "From", "rcpt_to"} <= set(errors)
    sent = [o for o in recorded.values() if "data" in o]
    assert any(o["smtputf8"] for o in sent)
    assert any(o["eight_bit"] and not o["smtputf8"] for o in sent)
    assert any(o["tls_optional"] for o in sent) and any(o["require_tls"] for o in sent)
    bcc = recorded["recipients and bcc"]
    assert "hidden@example.org" in bcc["recipients"]
    assert b"hidden" not in base64.b64decode(bcc["data"])
