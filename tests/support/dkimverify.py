"""DKIM verification as a receiver does it, with published records and no DNS.

``Published`` holds TXT records given as zone-file lines, exactly as a signer
prints them for an administrator to publish::

    dns = Published('s1._domainkey.example.test IN TXT "v=DKIM1; k=rsa; " "p=..."')
    assert verify_all(received.data, dns) == [True]

and answers dkimpy's ``dnsfunc`` lookups from them, so the verification is
dkimpy's own, fed only what an administrator would publish.
"""

from __future__ import annotations

import re

import dkim

__all__ = ["Published", "signature_tags", "verify_all"]

_RECORD = re.compile(r'^(\S+)\s+IN\s+TXT\s+((?:"[^"]*"\s*)+)$')
_STRING = re.compile(r'"([^"]*)"')
_SIGNATURE = re.compile(
    rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", re.IGNORECASE | re.MULTILINE | re.DOTALL
)


class Published:
    """TXT records from zone-file lines, served to dkimpy's verifier."""

    def __init__(self, *lines: str) -> None:
        self.records: dict[str, str] = {}
        self.lookups: list[str] = []
        for line in lines:
            match = _RECORD.match(line.strip())
            if match is None:
                raise ValueError(f"not a TXT record line: {line!r}")
            name = match.group(1).rstrip(".").lower()
            self.records[name] = "".join(_STRING.findall(match.group(2)))

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the TXT text at ``name``, or None."""
        key = name.decode("ascii").rstrip(".").lower()
        self.lookups.append(key)
        text = self.records.get(key)
        return text.encode("ascii") if text is not None else None


def verify_all(message: bytes, dns: Published) -> list[bool]:
    """Verify each DKIM-Signature of ``message``, topmost first."""
    count = len(_SIGNATURE.findall(_header_block(message)))
    results = []
    for index in range(count):
        verifier = dkim.DKIM(message, minkey=1024)
        try:
            results.append(bool(verifier.verify(idx=index, dnsfunc=dns)))
        except dkim.DKIMException:
            results.append(False)
    return results


def signature_tags(message: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature of ``message`` (whitespace removed)."""
    found = []
    for raw in _SIGNATURE.findall(_header_block(message)):
        value = re.sub(rb"\s+", b"", raw).decode("ascii")
        tags = dict(part.split("=", 1) for part in value.split(";") if "=" in part)
        found.append(tags)
    return found


def _header_block(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
