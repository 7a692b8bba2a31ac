"""A DNSSEC-signed zone on the loopback DNS server, and Unbound validating it.

``SignedZone`` holds the records of one zone, signed with dnspython (one
ECDSA P-256 key with the SEP flag, NSEC records for denials), and answers
queries as an authoritative server does for DNSSEC (RFC 4035 §3.1): with the
RRSIGs of each RRset when the query has the DO bit, with the SOA and the NSEC
records that prove a name or type absent, CNAMEs followed within the zone. ``zone.respond`` is the
``responder`` of a ``dnsd.DnsServer``; names outside the zone are answered
from an unsigned ``dnsd.Zone`` if one is given (``others``), else refused.

``Unbound`` runs the ``unbound`` program as a validating resolver on a
loopback port, with the zone's key as its only trust anchor and stub zones
that send every question (the root's included) to the loopback server, so
that it never asks anything beyond loopback. Its answers carry a genuine AD
bit::

    zone = SignedZone("d.test", records)
    server = DnsServer(responder=zone.respond)     # started
    with Unbound(tmp_path, zone, server.port) as unbound:
        resolver = unbound.resolver()

``UNBOUND`` is the program's path, or None when it is not installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec

from . import bind_socket
from .dnsd import Zone, answer, loopback_resolver

__all__ = ["UNBOUND", "SignedZone", "Unbound"]

UNBOUND = shutil.which("unbound") or next(
    (path for path in ("/usr/sbin/unbound",) if os.access(path, os.X_OK)), None
)

_IN = dns.rdataclass.IN
_CNAME = dns.rdatatype.CNAME
_MAX_CNAME_HOPS = 8


class SignedZone:
    """The zone ``apex`` with ``records`` (lines of ``name ttl type data``,
    names relative to the apex or absolute), an SOA and NS added, signed now
    for a day; other names answered from ``others``, unsigned.

    ``forge(name, rdtype, text)`` then swaps one record's data after signing,
    as an attacker on the path would: its signature no longer verifies.
    """

    def __init__(
        self, apex: str, records: Iterable[str], *, others: Zone | None = None
    ) -> None:
        self.apex = dns.name.from_text(apex)
        self.others = others
        lines = [
            "@ 300 IN SOA ns hostmaster 1 3600 600 86400 60",
            "@ 300 IN NS ns",
            "ns 300 IN A 127.0.0.1",
            *records,
        ]
        self._zone = dns.zone.from_text(
            "\n".join(lines), origin=self.apex, relativize=False
        )
        key = ec.generate_private_key(ec.SECP256R1())
        self.dnskey = dns.dnssec.make_dnskey(
            key.public_key(), "ECDSAP256SHA256", flags=257
        )
        now = time.time()
        dns.dnssec.sign_zone(
            self._zone,
            keys=[(key, self.dnskey)],
            inception=now - 3600,
            expiration=now + 86400,
        )
        self._names = sorted(self._zone.nodes)

    @property
    def trust_anchor(self) -> str:
        """The zone's key as an Unbound ``trust-anchor`` line's value."""
        return f"{self.apex} 300 IN DNSKEY {self.dnskey.to_text()}"

    def forge(self, name: str, rdtype: str, text: str) -> None:
        """Replace the ``rdtype`` data at ``name`` with ``text``, keeping the
        old signature (which then fails to verify)."""
        owner = dns.name.from_text(name, self.apex)
        kind = dns.rdatatype.from_text(rdtype)
        with self._zone.writer() as txn:
            old = txn.get(owner, kind)
            txn.replace(owner, dns.rrset.from_text(owner, old.ttl, _IN, kind, text))

    def respond(self, query: dns.message.Message) -> dns.message.Message | None:
        """The authoritative response to ``query``."""
        if self.others is not None and not all(
            question.name.is_subdomain(self.apex) for question in query.question
        ):
            return self._outside(query, self.others)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        dnssec = bool(query.ednsflags & dns.flags.DO)
        if dnssec:
            response.want_dnssec(True)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, dns.rdatatype.RdataType(question.rdtype)
        if not qname.is_subdomain(self.apex):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        node = self._zone.get_node(qname)
        for _ in range(_MAX_CNAME_HOPS):
            cname = None if node is None else node.get_rdataset(_IN, _CNAME)
            if cname is None or qtype == _CNAME:
                break
            # RFC 1034 §4.3.2: the alias, then the answer for its target
            # when the target is in the zone.
            self._add(response.answer, qname, _CNAME, dnssec)
            qname = cname[0].target
            if not qname.is_subdomain(self.apex):
                return response
            node = self._zone.get_node(qname)
        if node is not None and node.get_rdataset(_IN, qtype) is not None:
            self._add(response.answer, qname, qtype, dnssec)
            return response
        self._add(response.authority, self.apex, dns.rdatatype.SOA, dnssec)
        if node is not None:  # the name exists, without that type
            if dnssec:
                self._add(response.authority, qname, dns.rdatatype.NSEC, True)
            return response
        if not any(name.is_subdomain(qname) for name in self._names):
            response.set_rcode(dns.rcode.NXDOMAIN)
        if dnssec:
            for owner in self._denials(qname):
                self._add(response.authority, owner, dns.rdatatype.NSEC, True)
        return response

    def _outside(
        self, query: dns.message.Message, others: Zone
    ) -> dns.message.Message | None:
        """The unsigned answer from ``others``; the root's NS records, which
        Unbound asks for before it uses a stub zone for the root, name this
        zone's server."""
        [question] = query.question
        if question.name != dns.name.root or question.rdtype != dns.rdatatype.NS:
            return answer(others, query, over_udp=False)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        server = dns.name.from_text("ns", self.apex)
        response.answer.append(
            dns.rrset.from_text(dns.name.root, 300, _IN, "NS", server.to_text())
        )
        return response

    def _add(
        self,
        section: list[dns.rrset.RRset],
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        dnssec: bool,
    ) -> None:
        section.append(self._zone.find_rrset(name, rdtype))
        if dnssec:
            section.append(
                self._zone.find_rrset(name, dns.rdatatype.RRSIG, covers=rdtype)
            )

    def _denials(self, qname: dns.name.Name) -> list[dns.name.Name]:
        """The owners of the NSEC records that cover ``qname`` and the
        wildcard at its closest encloser (RFC 4035 §3.1.3.2)."""
        encloser = qname.parent()
        while self._zone.get_node(encloser) is None:
            encloser = encloser.parent()
        wildcard = dns.name.Name((b"*", *encloser.labels))
        owners = [self._covering(qname), self._covering(wildcard)]
        return list(dict.fromkeys(owners))

    def _covering(self, name: dns.name.Name) -> dns.name.Name:
        return max(owner for owner in self._names if owner < name)


class Unbound:
    """``unbound`` validating ``zone``, served by a DNS server on
    127.0.0.1:``dns_port``, listening on 127.0.0.1 at a port of its own;
    its files and log in ``directory``.

    Raises:
        RuntimeError: the program is missing, exits, or does not answer
            within ``start_timeout`` seconds (its log is in the message).
    """

    def __init__(
        self,
        directory: Path,
        zone: SignedZone,
        dns_port: int,
        *,
        start_timeout: float = 10.0,
    ) -> None:
        self.directory = directory
        self.zone = zone
        self.dns_port = dns_port
        self.host = "127.0.0.1"
        self.port = 0
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / "unbound.log"

    def start(self) -> None:
        if UNBOUND is None:
            raise RuntimeError("unbound is not installed")
        self.port = _free_udp_and_tcp_port(self.host)
        config = self.directory / "unbound.conf"
        config.write_text(self._config())
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [UNBOUND, "-d", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Unbound:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def resolver(
        self, *, timeout: float = 2.0, lifetime: float = 4.0
    ) -> dns.resolver.Resolver:
        """A resolver that asks only this Unbound."""
        return loopback_resolver(self.host, self.port, timeout, lifetime)

    def _config(self) -> str:
        stub = f"{self.host}@{self.dns_port}"
        return f"""server:
    interface: {self.host}
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{self.directory}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    qname-minimisation: no
    prefetch: no
    module-config: "validator iterator"
    trust-anchor: "{self.zone.trust_anchor}"
    local-zone: "test." nodefault
remote-control:
    control-enable: no
stub-zone:
    name: "."
    stub-addr: {stub}
stub-zone:
    name: "{self.zone.apex}"
    stub-addr: {stub}
"""

    def _wait_ready(self) -> None:
        query = dns.message.make_query(self.zone.apex, "SOA")
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"unbound exited: {self._log.read_text()}")
            with contextlib.suppress(dns.exception.Timeout, OSError):
                dns.query.udp(query, self.host, port=self.port, timeout=0.2)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"unbound did not answer: {self._log.read_text()}")


def _free_udp_and_tcp_port(host: str) -> int:
    """A port free for both UDP and TCP on ``host`` right now."""
    for _ in range(50):
        with bind_socket(host, 0) as tcp:
            port: int = tcp.getsockname()[1]
            try:
                with bind_socket(host, port, socket.SOCK_DGRAM):
                    return port
            except OSError:
                continue
    raise OSError("no port free for both UDP and TCP")
