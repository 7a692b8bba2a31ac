"""One DNS question under a deadline, with DNSSEC's answer on request.

:func:`query` asks a ``dns.resolver.Resolver`` (the one MX lookups use) for one
record type and sorts the outcome into three kinds an MTA acts on: data, no
such name, no such data; trouble that may pass (SERVFAIL, REFUSED, timeouts)
is raised as :class:`DnsTrouble`, a name that is no DNS name as
:class:`NotADnsName`: the one place where DNS failures become errors. With
``dnssec=True`` the question carries the DO bit (RFC 3225) and the AD bit
(RFC 6840 §5.7), so a validating resolver says in the answer's AD bit whether
it authenticated it (RFC 4035 §3.2.3). The caller's resolver is never changed:
a copy carries those settings.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import dns.rdata
    import dns.resolver

__all__ = ["DnsAnswer", "DnsTrouble", "NotADnsName", "dnssec_resolver", "query"]

#: The EDNS payload size asked for with DNSSEC (the DNS flag day 2020 value).
EDNS_PAYLOAD = 1232


class DnsTrouble(Exception):
    """A lookup failed in a way that may pass: SERVFAIL, REFUSED, a timeout,
    a malformed answer, or a name that is not a DNS name."""


class NotADnsName(DnsTrouble):
    """The name asked about is not a DNS name (an empty label, a label past 63
    octets...): no lookup of it can ever succeed."""


@dataclass(frozen=True)
class DnsAnswer:
    """What the DNS said about one name and type.

    Attributes:
        kind: ``"data"`` (records found), ``"nxdomain"`` (no such name) or
            ``"nodata"`` (the name exists, without records of that type).
        records: the records, for ``"data"``; empty otherwise.
        ttl: how long the answer may be kept, in seconds (for a negative
            answer, the SOA's negative TTL when the server gave one, else 0).
        authentic: the response had the AD bit set. It means something only
            when the resolver validates DNSSEC and the path to it is trusted
            (RFC 7672 §2.1); the caller decides that.
        cnames: how many CNAMEs the resolver followed to the answer (0 for
            ``"nxdomain"``).
        expanded: for an answer found through CNAMEs, the fully expanded name
            (lower case, no final dot); "" when no CNAME was followed.
    """

    kind: Literal["data", "nxdomain", "nodata"]
    records: tuple[dns.rdata.Rdata, ...] = ()
    ttl: int = 0
    authentic: bool = False
    cnames: int = 0
    expanded: str = ""


def query(
    resolver: dns.resolver.Resolver,
    name: str,
    rdtype: str,
    *,
    deadline: float,
    dnssec: bool = False,
) -> DnsAnswer:
    """Ask ``resolver`` for the ``rdtype`` records of ``name`` by ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value; the lookup also keeps to the
    resolver's own lifetime. CNAMEs are followed by the resolver.

    Raises:
        NotADnsName: ``name`` is not a DNS name.
        DnsTrouble: no answer could be had by then.
    """
    import dns.exception  # noqa: PLC0415 (imported on first use)
    import dns.flags  # noqa: PLC0415
    import dns.name  # noqa: PLC0415
    import dns.rdatatype  # noqa: PLC0415
    import dns.resolver  # noqa: PLC0415

    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise NotADnsName(f"{name!r} is not a DNS name ({exc})") from None
    left = min(resolver.lifetime, deadline - time.monotonic())
    if left <= 0:
        raise DnsTrouble(f"no time left to look up {name} {rdtype}")
    if dnssec:
        resolver = dnssec_resolver(resolver)
    try:
        answer = resolver.resolve(
            qname,
            dns.rdatatype.from_text(rdtype),
            raise_on_no_answer=False,
            search=False,
            lifetime=left,
        )
    except dns.resolver.NXDOMAIN as exc:
        return _nxdomain(exc, qname)
    except dns.exception.Timeout:
        raise DnsTrouble(f"DNS lookup of {name} {rdtype} timed out") from None
    except dns.resolver.NoNameservers as exc:
        raise DnsTrouble(
            f"DNS lookup of {name} {rdtype} failed (SERVFAIL or REFUSED): {exc}"
        ) from None
    except dns.exception.DNSException as exc:
        raise DnsTrouble(f"DNS lookup of {name} {rdtype} failed: {exc}") from None
    authentic = bool(answer.response.flags & dns.flags.AD)
    chain = answer.chaining_result
    ttl, cnames = chain.minimum_ttl, len(chain.cnames)
    if answer.rrset is None:
        return DnsAnswer("nodata", ttl=ttl, authentic=authentic, cnames=cnames)
    expanded = ""
    if cnames:
        expanded = chain.canonical_name.to_text(omit_final_dot=True).lower()
    return DnsAnswer("data", tuple(answer.rrset), ttl, authentic, cnames, expanded)


def dnssec_resolver(resolver: dns.resolver.Resolver) -> dns.resolver.Resolver:
    """A copy of ``resolver`` whose questions carry the DO and AD bits, so a
    validating resolver says in each answer's AD bit whether it authenticated
    it; ``resolver`` itself is left as it was."""
    import dns.flags  # noqa: PLC0415 (imported on first use)

    asking = copy.copy(resolver)
    asking.use_edns(0, dns.flags.DO, EDNS_PAYLOAD)
    asking.flags = dns.flags.RD | dns.flags.AD
    return asking


def _nxdomain(exc: dns.resolver.NXDOMAIN, qname: dns.name.Name) -> DnsAnswer:
    import dns.exception  # noqa: PLC0415 (imported on first use)
    import dns.flags  # noqa: PLC0415
    import dns.message  # noqa: PLC0415

    response = exc.kwargs.get("responses", {}).get(qname)
    if not isinstance(response, dns.message.QueryMessage):
        return DnsAnswer("nxdomain")
    try:
        ttl = response.resolve_chaining().minimum_ttl
    except dns.exception.DNSException:
        ttl = 0
    return DnsAnswer("nxdomain", ttl=ttl, authentic=bool(response.flags & dns.flags.AD))
