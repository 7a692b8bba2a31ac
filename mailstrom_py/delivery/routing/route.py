"""What routing gives: a domain's route (its mail exchangers, in order, with
their addresses), or the reason it has none."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MxHost", "Route", "RouteError"]


class RouteError(Exception):
    """Raised when a domain's mail cannot be routed now, or ever.

    Attributes:
        detail: what went wrong, in words.
        status_code: the RFC 3463 code to record (``"4.4.3"``, ``"5.4.4"``...).
        permanent: true when retrying cannot help (the recipients fail).
    """

    def __init__(self, detail: str, status_code: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.permanent = permanent


@dataclass(frozen=True)
class MxHost:
    """One mail exchanger and its addresses.

    Attributes:
        name: the host name (lower case, no final dot), or the IP address of an
            address literal.
        preference: the MX preference (0 for an implicit MX or a literal).
        ipv6: its IPv6 addresses, in the order DNS gave them.
        ipv4: its IPv4 addresses, in the order DNS gave them.
        authentic: every address record found came DNSSEC-authenticated
            (the AD bit, asked for only by ``MxResolver(dnssec=True)``), the
            CNAMEs leading to them included; False for an address literal.
        expanded: when ``name`` is an alias, the fully CNAME-expanded name
            that holds its address records (lower case, no final dot); ""
            when it is none. DANE looks for TLSA records there first, if
            ``authentic`` (RFC 7672 §2.2.2).
    """

    name: str
    preference: int
    ipv6: tuple[str, ...] = ()
    ipv4: tuple[str, ...] = ()
    authentic: bool = False
    expanded: str = ""


@dataclass(frozen=True)
class Route:
    """The exchangers for a domain, in the order to try them.

    Attributes:
        domain: the recipient domain.
        hosts: exchangers with at least one address, most preferred first.
        implicit: the domain has no MX records; its own addresses are used.
        authentic: the MX RRset, or for an implicit MX the answer that there
            is none, came DNSSEC-authenticated, the CNAMEs leading to it
            included (asked for only by ``MxResolver(dnssec=True)``); False
            for an address literal. DANE applies only to the exchangers of
            such a route (RFC 7672 §2.2.1).
        expanded: when ``domain`` is an alias, its fully CNAME-expanded
            name (lower case, no final dot), as the MX lookup found it, or
            for an implicit MX the lookup of its addresses; "" when it is
            none. The chain is secure when ``authentic`` is (for an implicit
            MX, when the exchanger's is too); DANE-TA certificates may then
            carry it (RFC 7672 §3.2.2).
    """

    domain: str
    hosts: tuple[MxHost, ...]
    implicit: bool = False
    authentic: bool = False
    expanded: str = ""
