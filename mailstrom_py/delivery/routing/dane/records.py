"""TLSA records for an MX host and their DNSSEC status (RFC 7672 §2.2, §3.1).

DANE for SMTP holds only for records DNSSEC vouches for: the answer must have
the AD bit, from a resolver the caller configured as validating and reaches
over a trusted path (RFC 7672 §2.1, a resolver on loopback for instance).
Records without that are ignored, as if there were none.

Of the records, only DANE-TA(2) and DANE-EE(3), with a full certificate (0)
or public key (1) selector and an exact (0), SHA-256 (1) or SHA-512 (2)
matching type, are usable; PKIX-TA(0) and PKIX-EE(1) are not, in SMTP
(RFC 7672 §3.1.3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from ..answers import MAX_NEGATIVE_TTL, MAX_TTL, AnswerCache
from ..dnsquery import DnsAnswer, DnsTrouble, query

if TYPE_CHECKING:
    import dns.resolver

__all__ = ["DANE_EE", "DANE_TA", "TlsaLookup", "TlsaRecord", "lookup_tlsa", "tlsa_name"]

#: Usage DANE-TA: the record names a trust anchor of the server's chain.
DANE_TA = 2
#: Usage DANE-EE: the record names the server's own certificate or key.
DANE_EE = 3
#: Digest lengths by matching type: SHA-256 (1) and SHA-512 (2); 0 is exact.
_DIGEST_SIZES = {1: 32, 2: 64}


@dataclass(frozen=True)
class TlsaRecord:
    """One TLSA record (RFC 6698 §2.1).

    Attributes:
        usage: 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
        selector: 0 the full certificate, 1 its SubjectPublicKeyInfo.
        matching_type: 0 the data itself, 1 its SHA-256, 2 its SHA-512.
        data: the certificate association data.
    """

    usage: int
    selector: int
    matching_type: int
    data: bytes

    @classmethod
    def from_text(cls, text: str) -> TlsaRecord:
        """Read the presentation form, ``"3 1 1 <hex>"``.

        Raises:
            ValueError: not four fields of numbers and hex.
        """
        fields = text.split(None, 3)
        if len(fields) != 4:
            raise ValueError(f"a TLSA record has four fields: {text!r}")
        usage, selector, matching_type = (int(field) for field in fields[:3])
        return cls(usage, selector, matching_type, bytes.fromhex(fields[3]))

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.matching_type} {self.data.hex()}"

    @property
    def unusable_reason(self) -> str | None:
        """Why an SMTP client cannot use the record, or None if it can."""
        if self.usage in (0, 1):
            return f"usage {self.usage} (PKIX) is unusable in SMTP (RFC 7672 §3.1.3)"
        if self.usage not in (DANE_TA, DANE_EE):
            return f"unknown usage {self.usage}"
        if self.selector not in (0, 1):
            return f"unknown selector {self.selector}"
        if self.matching_type not in (0, 1, 2):
            return f"unknown matching type {self.matching_type}"
        size = _DIGEST_SIZES.get(self.matching_type)
        if size is not None and len(self.data) != size:
            return f"a {size}-byte digest expected, not {len(self.data)} bytes"
        if not self.data:
            return "no association data"
        return None

    @property
    def usable(self) -> bool:
        """Whether an SMTP client can verify a server with this record."""
        return self.unusable_reason is None


Status = Literal["usable", "unusable", "absent", "insecure", "failed"]


@dataclass(frozen=True)
class TlsaLookup:
    """The TLSA records of one MX host, and what they mean for the client.

    Attributes:
        host: the MX host name.
        status: what the client must do (RFC 7672 §2.2):

            - ``usable``: authenticated records, some usable: TLS is
              required and verified against the usable records (DANE).
            - ``unusable``: authenticated records, none usable: TLS is
              required, without authentication (§2.2, §3.1.3).
            - ``absent``: no TLSA records: DANE does not apply.
            - ``insecure``: records not authenticated by DNSSEC (no AD bit,
              or a resolver not trusted to validate): ignored, as if absent.
            - ``failed``: the lookup failed (SERVFAIL, a timeout). If the
              host's address records were DNSSEC-secure the host must not
              be used now (§2.2); otherwise DANE does not apply.
        records: every record found (also the ignored ones of ``insecure``).
        detail: why, in words, for the statuses other than ``usable``.
        base: the TLSA base domain the status is about: the host's
            CNAME-expanded name or the host name itself (§2.2.2); "" when
            nothing was asked.
    """

    host: str
    status: Status
    records: tuple[TlsaRecord, ...] = ()
    detail: str = ""
    base: str = ""

    @property
    def usable_records(self) -> tuple[TlsaRecord, ...]:
        """The records the server is verified against (empty unless ``usable``)."""
        if self.status != "usable":
            return ()
        return tuple(record for record in self.records if record.usable)

    @property
    def requires_tls(self) -> bool:
        """Whether DANE makes TLS mandatory toward the host."""
        return self.status in ("usable", "unusable")


def tlsa_name(host: str, port: int = 25) -> str:
    """The owner name of ``host``'s TLSA records: ``_25._tcp.<host>``.

    RFC 7672 §2.2.3; ``port`` is 25 but in tests.
    """
    return f"_{port}._tcp.{host.rstrip('.').lower()}"


def lookup_tlsa(
    resolver: dns.resolver.Resolver,
    host: str,
    *,
    dnssec_trusted: bool,
    port: int = 25,
    deadline: float | None = None,
    expanded: str = "",
    cache: AnswerCache[DnsAnswer] | None = None,
) -> TlsaLookup:
    """Look up the TLSA records of MX host ``host`` and judge them (RFC 7672 §2.2).

    The query asks for DNSSEC (DO and AD set); the answer counts only if it
    has the AD bit and ``dnssec_trusted`` says the resolver validates and is
    reached over a trusted path. With ``dnssec_trusted`` false nothing is
    asked: the answer could not be trusted. ``deadline`` is a
    ``time.monotonic()`` value, by default the resolver's lifetime from now.

    ``expanded`` is the fully CNAME-expanded name of ``host`` when ``host``
    is an alias whose CNAME chain and address records came authenticated
    (the caller knows). The records are then looked up there first, and at
    ``host`` only if the expanded name has none that DNSSEC vouches for (no
    records, or records without the AD bit); the name whose records are
    used is the TLSA base domain, :attr:`TlsaLookup.base` (RFC 7672 §2.2.2,
    §2.2.3). A lookup that fails at the expanded name ends the search: the
    answer there is unknown, so the host must not be used now.

    With ``cache``, answers are kept per TLSA name for their TTL (at most
    :data:`~..answers.MAX_TTL`; denials, NXDOMAIN and NODATA, for their
    negative TTL, at most :data:`~..answers.MAX_NEGATIVE_TTL`), the AD bit
    with them. Failed lookups are never kept.

    dnspython refuses to read a record whose digest has the wrong length for
    its matching type, so an answer holding one fails as a whole (status
    ``failed``) rather than giving an unusable record.

    The caller must also know that the MX host name came from a secure MX
    RRset (§2.2.1).
    """
    host = host.rstrip(".").lower()
    if not dnssec_trusted:
        return TlsaLookup(
            host, "insecure", (), "the resolver is not trusted to validate DNSSEC"
        )
    if deadline is None:
        deadline = time.monotonic() + resolver.lifetime
    expanded = expanded.rstrip(".").lower()
    bases = [expanded, host] if expanded and expanded != host else [host]
    passed: list[TlsaLookup] = []
    for base in bases:
        found = _lookup_base(
            resolver, host, base, port=port, deadline=deadline, cache=cache
        )
        if found.status not in ("absent", "insecure"):
            return found
        passed.append(found)
    if len(passed) == 1:
        return passed[0]
    return replace(passed[-1], detail="; ".join(each.detail for each in passed))


def _lookup_base(
    resolver: dns.resolver.Resolver,
    host: str,
    base: str,
    *,
    port: int,
    deadline: float,
    cache: AnswerCache[DnsAnswer] | None,
) -> TlsaLookup:
    """The TLSA records of ``host`` found at the candidate base domain ``base``."""
    name = tlsa_name(base, port)
    try:
        answer = _answer(resolver, name, deadline, cache)
    except DnsTrouble as exc:
        return TlsaLookup(host, "failed", (), str(exc), base)
    if answer.kind != "data":
        secure = "secure" if answer.authentic else "insecure"
        return TlsaLookup(
            host, "absent", (), f"{name}: no TLSA records ({secure} answer)", base
        )
    records = tuple(
        TlsaRecord(
            int(rdata.usage),  # type: ignore[attr-defined]
            int(rdata.selector),  # type: ignore[attr-defined]
            int(rdata.mtype),  # type: ignore[attr-defined]
            bytes(rdata.cert),  # type: ignore[attr-defined]
        )
        for rdata in answer.records
    )
    if not answer.authentic:
        detail = f"{name}: answer not DNSSEC-authenticated (no AD bit)"
        return TlsaLookup(host, "insecure", records, detail, base)
    if not any(record.usable for record in records):
        reasons = "; ".join(sorted({str(record.unusable_reason) for record in records}))
        detail = f"{name}: no usable record: {reasons}"
        return TlsaLookup(host, "unusable", records, detail, base)
    return TlsaLookup(host, "usable", records, "", base)


def _answer(
    resolver: dns.resolver.Resolver,
    name: str,
    deadline: float,
    cache: AnswerCache[DnsAnswer] | None,
) -> DnsAnswer:
    """The DNSSEC answer for ``name``'s TLSA records, from ``cache`` while
    it lasts; raises DnsTrouble, which is never cached."""
    key = (name, "TLSA")
    if cache is not None:
        cached = cache.get(key)
        if cached is not None:
            return cached
    answer = query(resolver, name, "TLSA", deadline=deadline, dnssec=True)
    if cache is not None:
        most = MAX_TTL if answer.kind == "data" else MAX_NEGATIVE_TTL
        cache.put(key, answer, min(answer.ttl, most))
    return answer
