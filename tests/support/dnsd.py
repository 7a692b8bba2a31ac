"""A small authoritative DNS server on loopback, built on dnspython's messages.

``Zone`` holds records and per-name behaviours; ``DnsServer`` answers from it
over UDP and TCP on one port, in threads::

    zone = Zone()
    zone.add("example.test", "MX", "10 mx1.example.test.")
    zone.add("mx1.example.test", "A", "127.0.0.2")
    zone.servfail("broken.test")
    with DnsServer(zone) as dns_server:
        resolver = dns_server.resolver()
        answer = resolver.resolve("example.test", "MX")

What ``dns.resolver.Resolver.resolve`` then raises (dnspython 2.9):
unknown name -> NXDOMAIN; name with other types only -> NoAnswer;
``servfail``/``refused`` -> NoNameservers; ``drop`` -> LifetimeTimeout.
``zone.delay(name, seconds)`` answers late (a slow resolver), without holding
up the answers to other queries.

A server can also answer through a function of its own instead of a
``Zone`` (``DnsServer(responder=...)``), as ``dnssec.SignedZone`` does.

``zone.sign("example.test")`` plays a validating resolver that trusts the
zone: answers for names at or below it carry the AD bit (RFC 4035 §3.2.3),
when the query asks for it with DO or AD (RFC 6840 §5.7), as resolvers do.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

from . import bind_socket

__all__ = [
    "Behaviour",
    "DnsServer",
    "DnsServerFactory",
    "Responder",
    "Zone",
    "loopback_resolver",
]


def loopback_resolver(
    host: str, port: int, timeout: float, lifetime: float
) -> dns.resolver.Resolver:
    """A resolver that asks only ``host``:``port`` (no system configuration,
    no cache), each try within ``timeout`` and the whole lookup ``lifetime``."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = lifetime
    return resolver


_MAX_CNAME_HOPS = 8
_SOA_TTL = 60


class Behaviour(Enum):
    """What the server does for a name instead of answering from records."""

    SERVFAIL = "servfail"
    REFUSED = "refused"
    DROP = "drop"
    """Never answer (the client times out)."""
    TRUNCATE = "truncate"
    """Over UDP, answer with TC set and no records, forcing a TCP retry."""


def _name(text: str | dns.name.Name) -> dns.name.Name:
    if isinstance(text, dns.name.Name):
        return text
    return dns.name.from_text(text)


def _rdtype(text: str | dns.rdatatype.RdataType) -> dns.rdatatype.RdataType:
    if isinstance(text, dns.rdatatype.RdataType):
        return text
    return dns.rdatatype.from_text(text)


def _quote_txt(text: str) -> str:
    if text.startswith('"'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class _Record:
    ttl: int
    rdata: dns.rdata.Rdata


class Zone:
    """Records and behaviours, safe to change while a server answers from it.

    Names are absolute and case-insensitive (``"example.test"`` means
    ``example.test.``). Relative names inside rdata are taken from the root,
    so ``"10 mx1.example.test"`` needs no trailing dot. A name exists (NODATA
    rather than NXDOMAIN) if it or any name below it has a record.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[
            tuple[dns.name.Name, dns.rdatatype.RdataType], list[_Record]
        ] = {}
        self._behaviours: dict[
            tuple[dns.name.Name, dns.rdatatype.RdataType | None], Behaviour
        ] = {}
        self._signed: set[dns.name.Name] = set()
        self._delays: dict[
            tuple[dns.name.Name, dns.rdatatype.RdataType | None], float
        ] = {}

    # -- records --------------------------------------------------------------

    def add(self, name: str, rdtype: str, rdata: str, ttl: int = 300) -> Zone:
        """Add one record, e.g. ``add("a.test", "MX", "10 mx.a.test")``.

        TXT data without quotes is quoted for you. Returns the zone, so calls
        chain.
        """
        kind = _rdtype(rdtype)
        if kind == dns.rdatatype.TXT:
            rdata = _quote_txt(rdata)
        parsed = dns.rdata.from_text(
            dns.rdataclass.IN, kind, rdata, origin=dns.name.root, relativize=False
        )
        with self._lock:
            self._records.setdefault((_name(name), kind), []).append(
                _Record(ttl, parsed)
            )
        return self

    def set(self, name: str, rdtype: str, *rdatas: str, ttl: int = 300) -> Zone:
        """Replace the records of one type at ``name`` (none removes them)."""
        self.remove(name, rdtype)
        for rdata in rdatas:
            self.add(name, rdtype, rdata, ttl=ttl)
        return self

    def remove(self, name: str, rdtype: str | None = None) -> Zone:
        """Remove the records of ``rdtype`` at ``name`` (all types if None)."""
        owner = _name(name)
        with self._lock:
            for key in list(self._records):
                if key[0] == owner and (rdtype is None or key[1] == _rdtype(rdtype)):
                    del self._records[key]
        return self

    # -- behaviours -----------------------------------------------------------

    def servfail(self, name: str, rdtype: str | None = None) -> Zone:
        """Answer SERVFAIL for ``name`` (only for ``rdtype`` if given)."""
        return self._behave(name, rdtype, Behaviour.SERVFAIL)

    def refused(self, name: str, rdtype: str | None = None) -> Zone:
        """Answer REFUSED for ``name`` (only for ``rdtype`` if given)."""
        return self._behave(name, rdtype, Behaviour.REFUSED)

    def drop(self, name: str, rdtype: str | None = None) -> Zone:
        """Never answer queries for ``name`` (only for ``rdtype`` if given)."""
        return self._behave(name, rdtype, Behaviour.DROP)

    def truncate(self, name: str, rdtype: str | None = None) -> Zone:
        """Set TC on UDP answers for ``name``, so clients retry over TCP."""
        return self._behave(name, rdtype, Behaviour.TRUNCATE)

    def clear_behaviour(self, name: str, rdtype: str | None = None) -> Zone:
        """Answer ``name`` from the records again."""
        with self._lock:
            self._behaviours.pop(
                (_name(name), None if rdtype is None else _rdtype(rdtype)), None
            )
        return self

    def delay(self, name: str, seconds: float, rdtype: str | None = None) -> Zone:
        """Answer queries for ``name`` (only for ``rdtype`` if given)
        ``seconds`` late; other queries are answered meanwhile. A delay
        longer than the client's timeout makes it ask again (each question
        is answered late), and 0 answers at once again."""
        key = (_name(name), None if rdtype is None else _rdtype(rdtype))
        with self._lock:
            if seconds > 0:
                self._delays[key] = seconds
            else:
                self._delays.pop(key, None)
        return self

    def delay_of(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> float:
        """How late queries for ``name`` and ``rdtype`` are answered."""
        with self._lock:
            return self._delays.get((name, rdtype), self._delays.get((name, None), 0))

    def _behave(self, name: str, rdtype: str | None, behaviour: Behaviour) -> Zone:
        key = (_name(name), None if rdtype is None else _rdtype(rdtype))
        with self._lock:
            self._behaviours[key] = behaviour
        return self

    # -- DNSSEC ----------------------------------------------------------------

    def sign(self, apex: str) -> Zone:
        """Treat ``apex`` and every name below it as DNSSEC-validated: answers
        carry the AD bit when the query asks for it (DO or AD set)."""
        with self._lock:
            self._signed.add(_name(apex))
        return self

    def unsign(self, apex: str) -> Zone:
        """Answer ``apex`` and the names below it without the AD bit again."""
        with self._lock:
            self._signed.discard(_name(apex))
        return self

    def signed(self, name: dns.name.Name) -> bool:
        """Whether ``name`` lies in a zone declared signed with :meth:`sign`."""
        with self._lock:
            return any(name.is_subdomain(apex) for apex in self._signed)

    # -- lookups (used by the server) ------------------------------------------

    def behaviour(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> Behaviour | None:
        with self._lock:
            return self._behaviours.get(
                (name, rdtype), self._behaviours.get((name, None))
            )

    def records(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> list[_Record]:
        with self._lock:
            if rdtype == dns.rdatatype.ANY:
                return [
                    record
                    for (owner, _), records in self._records.items()
                    if owner == name
                    for record in records
                ]
            return list(self._records.get((name, rdtype), ()))

    def exists(self, name: dns.name.Name) -> bool:
        with self._lock:
            return any(owner.is_subdomain(name) for owner, _ in self._records)


def _rrsets(name: dns.name.Name, records: list[_Record]) -> list[dns.rrset.RRset]:
    by_type: dict[dns.rdatatype.RdataType, list[_Record]] = {}
    for record in records:
        by_type.setdefault(record.rdata.rdtype, []).append(record)
    rrsets = []
    for group in by_type.values():
        ttl = min(record.ttl for record in group)
        rrsets.append(
            dns.rrset.from_rdata_list(name, ttl, [record.rdata for record in group])
        )
    return rrsets


def _soa(qname: dns.name.Name) -> dns.rrset.RRset:
    """A synthetic SOA for the negative answer's authority section."""
    labels = qname.labels
    apex = dns.name.Name(labels[-2:]) if len(labels) >= 2 else dns.name.root
    rdata = dns.rdata.from_text(
        dns.rdataclass.IN,
        dns.rdatatype.SOA,
        f"{dns.name.from_text('ns', apex)} {dns.name.from_text('hostmaster', apex)}"
        f" 1 3600 600 86400 {_SOA_TTL}",
        origin=dns.name.root,
        relativize=False,
    )
    return dns.rrset.from_rdata_list(apex, _SOA_TTL, [rdata])


def _wants_ad(query: dns.message.Message) -> bool:
    """Whether the query asks for the AD bit (RFC 6840 §5.7: DO or AD set)."""
    return bool(query.ednsflags & dns.flags.DO or query.flags & dns.flags.AD)


def answer(
    zone: Zone, query: dns.message.Message, *, over_udp: bool
) -> dns.message.Message | None:
    """Build the response to ``query`` from ``zone``; None means no reply.

    Answers from records, negative ones included, carry the AD bit when every
    name looked at is in a signed zone and the query asked for it.
    """
    response = _answer_records(zone, query, over_udp=over_udp)
    if (
        response is None
        or response.flags & dns.flags.TC
        or response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    ):
        return response
    names = [query.question[0].name] + [rrset.name for rrset in response.answer]
    if _wants_ad(query) and all(zone.signed(name) for name in names):
        response.flags |= dns.flags.AD
    return response


def _answer_records(
    zone: Zone, query: dns.message.Message, *, over_udp: bool
) -> dns.message.Message | None:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    qname, qtype = question.name, dns.rdatatype.RdataType(question.rdtype)
    behaviour = zone.behaviour(qname, qtype)
    if behaviour is Behaviour.DROP:
        return None
    if behaviour is Behaviour.SERVFAIL:
        response.set_rcode(dns.rcode.SERVFAIL)
        return response
    if behaviour is Behaviour.REFUSED:
        response.set_rcode(dns.rcode.REFUSED)
        return response
    if behaviour is Behaviour.TRUNCATE and over_udp:
        response.flags |= dns.flags.TC
        return response
    name = qname
    for _ in range(_MAX_CNAME_HOPS):
        records = zone.records(name, qtype)
        if records:
            response.answer.extend(_rrsets(name, records))
            return response
        cnames = (
            zone.records(name, dns.rdatatype.CNAME)
            if qtype != dns.rdatatype.CNAME
            else []
        )
        if cnames:
            response.answer.extend(_rrsets(name, cnames[:1]))
            target = cnames[0].rdata.target  # type: ignore[attr-defined]
            assert isinstance(target, dns.name.Name)
            name = target
            continue
        if not zone.exists(name):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(_soa(qname))
        return response
    response.set_rcode(dns.rcode.SERVFAIL)  # a CNAME loop
    return response


class DnsServer:
    """Answer DNS queries from ``zone`` on a loopback address, UDP and TCP.

    ``queries`` lists ``(name, type)`` of every query seen, e.g.
    ``("example.test", "MX")`` (lower case, no trailing dot), dropped ones
    included; ``tcp_queries`` the subset that came over TCP.
    """

    def __init__(
        self,
        zone: Zone | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        responder: Responder | None = None,
    ) -> None:
        self.zone = zone if zone is not None else Zone()
        self.responder = responder
        self.host = host
        self.port = port
        self._lock = threading.Condition()
        self._queries: list[tuple[str, str]] = []
        self._tcp_queries: list[tuple[str, str]] = []
        self._errors: list[BaseException] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._client_threads: list[threading.Thread] = []
        self._late: list[threading.Timer] = []
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return f"<DnsServer {self.host}:{self.port}>"

    @property
    def queries(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._queries)

    @property
    def tcp_queries(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._tcp_queries)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised while answering; tests expect none."""
        with self._lock:
            return list(self._errors)

    def wait_for_queries(
        self, count: int, timeout: float = 10
    ) -> list[tuple[str, str]]:
        """Block until ``count`` queries arrived; return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._queries) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._queries)} of {count} queries within {timeout} s"
                )
            return list(self._queries)

    def resolver(
        self, *, timeout: float = 1.0, lifetime: float = 2.0
    ) -> dns.resolver.Resolver:
        """A resolver that asks only this server (no system config, no cache)."""
        return loopback_resolver(self.host, self.port, timeout, lifetime)

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Bind UDP and TCP on one port and serve in background threads."""
        if self._thread is not None:
            raise RuntimeError("server already running")
        tcp, udp = self._bind_pair()
        port = tcp.getsockname()[1]
        with contextlib.ExitStack() as stack:
            stack.enter_context(tcp)
            stack.enter_context(udp)
            tcp.listen(16)
            wake_r, wake_w = socket.socketpair()
            stack.enter_context(wake_r)
            stack.enter_context(wake_w)
            stack.pop_all()
        self.port = port
        self._udp, self._tcp, self._wake_r, self._wake_w = udp, tcp, wake_r, wake_w
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._serve, name=f"dnsd-{self.host}:{port}", daemon=True
        )
        self._thread.start()

    def _bind_pair(self) -> tuple[socket.socket, socket.socket]:
        """Bind TCP and UDP to one port; with port 0, retry until both fit.

        An ephemeral TCP port can still be taken for UDP (or the reverse), so
        a few attempts may be needed.
        """
        for _ in range(50):
            tcp = bind_socket(self.host, self.port)
            try:
                udp = bind_socket(self.host, tcp.getsockname()[1], socket.SOCK_DGRAM)
            except OSError as error:
                tcp.close()
                if self.port != 0 or error.errno != errno.EADDRINUSE:
                    raise
                continue
            return tcp, udp
        raise OSError(errno.EADDRINUSE, "no port free for both TCP and UDP")

    def stop(self) -> None:
        """Stop serving, close every socket and join every thread."""
        if self._thread is None:
            return
        assert self._wake_w is not None
        self._stopping.set()
        self._wake_w.send(b"x")
        self._thread.join()
        self._thread = None
        with self._lock:
            clients = list(self._clients)
            threads = list(self._client_threads)
            late = list(self._late)
        for timer in late:
            timer.cancel()
            timer.join()
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- serving ----------------------------------------------------------------

    def _respond(self, wire: bytes, *, over_udp: bool) -> tuple[bytes | None, float]:
        """The reply to ``wire`` (None for none) and how late to send it."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None, 0  # not DNS: ignore it, as a real server would
        delay = 0.0
        if query.question:
            question = query.question[0]
            delay = self.zone.delay_of(
                question.name, dns.rdatatype.RdataType(question.rdtype)
            )
            seen = (
                question.name.to_text(omit_final_dot=True).lower(),
                dns.rdatatype.to_text(question.rdtype),
            )
            with self._lock:
                self._queries.append(seen)
                if not over_udp:
                    self._tcp_queries.append(seen)
                self._lock.notify_all()
        return self._reply(query, over_udp=over_udp), delay

    def _reply(self, query: dns.message.Message, *, over_udp: bool) -> bytes | None:
        if self.responder is not None:
            response = self.responder(query)
        else:
            response = answer(self.zone, query, over_udp=over_udp)
        if response is None:
            return None
        if not over_udp:
            return response.to_wire(max_size=65535)
        limit = max(query.payload if query.edns >= 0 else 512, 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire(max_size=limit)

    def _serve(self) -> None:
        assert self._udp is not None
        assert self._tcp is not None
        assert self._wake_r is not None
        while True:
            readable, _, _ = select.select([self._udp, self._tcp, self._wake_r], [], [])
            if self._wake_r in readable:
                return
            if self._udp in readable:
                self._serve_udp(self._udp)
            if self._tcp in readable:
                self._accept_tcp(self._tcp)

    def _serve_udp(self, udp: socket.socket) -> None:
        try:
            wire, peer = udp.recvfrom(65535)
            reply, delay = self._respond(wire, over_udp=True)
            if reply is None:
                return
            if delay <= 0:
                udp.sendto(reply, peer)
                return
            timer = threading.Timer(delay, self._send_late, (udp, reply, peer))
            timer.daemon = True
            with self._lock:
                self._late = [t for t in self._late if t.is_alive()] + [timer]
            timer.start()
        except Exception as error:
            with self._lock:
                self._errors.append(error)

    def _send_late(
        self, udp: socket.socket, reply: bytes, peer: tuple[object, ...]
    ) -> None:
        with contextlib.suppress(OSError):  # the server may be stopping
            udp.sendto(reply, peer)

    def _accept_tcp(self, tcp: socket.socket) -> None:
        try:
            client, _ = tcp.accept()
        except OSError:
            return
        thread = threading.Thread(
            target=self._serve_tcp, args=(client,), name="dnsd-tcp", daemon=True
        )
        with self._lock:
            self._clients.add(client)
            self._client_threads.append(thread)
        thread.start()

    def _serve_tcp(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            for wire in _tcp_messages(client):
                reply, delay = self._respond(wire, over_udp=False)
                if delay > 0 and self._stopping.wait(delay):
                    return
                if reply is not None:
                    client.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            pass  # the client went away, or the server is stopping
        except Exception as error:
            with self._lock:
                self._errors.append(error)
        finally:
            with self._lock:
                self._clients.discard(client)
            client.close()


def _tcp_messages(client: socket.socket) -> Iterator[bytes]:
    """Yield length-prefixed DNS messages until the client closes."""
    while True:
        header = _recv_exactly(client, 2)
        if header is None:
            return
        (length,) = struct.unpack("!H", header)
        body = _recv_exactly(client, length)
        if body is None:
            return
        yield body


def _recv_exactly(client: socket.socket, count: int) -> bytes | None:
    data = bytearray()
    while len(data) < count:
        chunk = client.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


Responder = Callable[[dns.message.Message], dns.message.Message | None]
"""Builds the response to a query (None: no reply), instead of a ``Zone``."""

DnsServerFactory = Callable[..., DnsServer]
"""The type of the ``dns_server`` fixture: ``dns_server(zone, host=..., port=...)``."""
