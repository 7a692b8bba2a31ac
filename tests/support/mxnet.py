"""A small mail network on loopback for direct-delivery tests.

``MxNet`` holds a DNS zone served by a loopback DNS server and SMTP servers
(aiosmtpd or scripted) on 127.0.0.2, 127.0.0.3, ... and ::1, all on one port,
so one ``DirectConfig(smtp_port=...)`` reaches every exchanger. It builds
mailers aimed at that network with a fixed clock.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mailstrom_py import Config, DirectConfig, Mailstrom, RetryPolicy, Storage, Timeouts

from .dnsd import DnsServer, DnsServerFactory, Zone
from .scripted import (
    Conversation,
    Handler,
    ScriptedServer,
    ScriptedServerFactory,
    free_port,
    refusing,
)
from .smtpd import SmtpServer, SmtpServerFactory

NOW = 1_700_000_000.0
RETRY = RetryPolicy(initial_delay=60, max_delay=600, jitter=0.0, max_age=3600)


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (IPv6 loopback exists)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def message(to: str, *, subject: str = "test", body: str = "Hello.\r\n") -> bytes:
    """A small message from sender@client.test to ``to`` (a To header value)."""
    return (
        f"From: Sender <sender@client.test>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n"
    ).encode() + body.encode()


class MxNet:
    """DNS plus SMTP servers on loopback addresses sharing one port."""

    def __init__(
        self,
        dns_server: DnsServerFactory,
        smtp_server: SmtpServerFactory,
        scripted_server: ScriptedServerFactory,
    ) -> None:
        self.zone = Zone()
        self.dns: DnsServer = dns_server(self.zone)
        self.port = free_port("127.0.0.2")
        self._smtp_server = smtp_server
        self._scripted_server = scripted_server
        self._stack = ExitStack()
        self.arrivals: list[str] = []
        """The address of every scripted server as each connection arrived."""

    def close(self) -> None:
        self._stack.close()

    # -- DNS --------------------------------------------------------------------

    def mx(self, domain: str, *exchangers: tuple[int, str, str]) -> MxNet:
        """Give ``domain`` MX records ``(preference, host, address)``, with the
        hosts' A or AAAA records."""
        for preference, host, address in exchangers:
            self.zone.add(domain, "MX", f"{preference} {host}")
            self.zone.add(host, "AAAA" if ":" in address else "A", address)
        return self

    def resolver_config(self, **direct: Any) -> DirectConfig:
        """A DirectConfig aimed at this network's DNS server and port."""
        direct.setdefault("resolver", self.dns.resolver(timeout=1.0, lifetime=2.0))
        direct.setdefault("smtp_port", self.port)
        return DirectConfig(**direct)

    # -- exchangers -------------------------------------------------------------

    def smtp(self, host: str, **kwargs: Any) -> SmtpServer:
        """An aiosmtpd server on ``host`` at the shared port."""
        return self._smtp_server(host=host, port=self.port, **kwargs)

    def scripted(
        self, host: str, handler: Handler, *, allow_errors: bool = False
    ) -> ScriptedServer:
        """A scripted server on ``host`` at the shared port; records arrivals."""

        def logged(conv: Conversation) -> None:
            self.arrivals.append(host)
            handler(conv)

        return self._scripted_server(
            logged, host=host, port=self.port, allow_errors=allow_errors
        )

    def refusing(self, host: str) -> None:
        """Make connections to ``host`` at the shared port be refused."""
        self._stack.enter_context(refusing(host, self.port))

    # -- mailers ----------------------------------------------------------------

    def config(self, *, timeouts: Timeouts | None = None, **options: Any) -> Config:
        """A Config for direct delivery here; ``options`` split between Config and
        DirectConfig by name."""
        config_names = {
            "allow_8bit",
            "require_tls",
            "retry",
            "delivery_threads",
            "session_max_messages",
        }
        config_options = {k: v for k, v in options.items() if k in config_names}
        direct = {k: v for k, v in options.items() if k not in config_names}
        config_options.setdefault("retry", RETRY)
        return Config(
            helo_name="client.test",
            delivery=self.resolver_config(**direct),
            timeouts=timeouts or Timeouts.uniform(5),
            **config_options,
        )

    def mailer(self, storage: Storage | None = None, **options: Any) -> Mailstrom:
        """A mailer for direct delivery here, on ``storage`` (by default a new
        MemoryStorage), its clock fixed at ``NOW``."""
        mailer = Mailstrom(self.config(**options), storage, clock=lambda: NOW)
        self._stack.callback(mailer.stop, 10)
        return mailer


@contextmanager
def mx_net(
    dns_server: DnsServerFactory,
    smtp_server: SmtpServerFactory,
    scripted_server: ScriptedServerFactory,
) -> Iterator[MxNet]:
    """An ``MxNet`` closed (mailers stopped, refusing ports freed) on exit."""
    net = MxNet(dns_server, smtp_server, scripted_server)
    try:
        yield net
    finally:
        net.close()
