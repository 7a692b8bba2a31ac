"""Fetching an MTA-STS policy over HTTPS: RFC 8461 §3.3 (row E4 of the matrix).

A real HTTPS server on 127.0.0.5 plays ``mta-sts.d.test`` with a certificate
from the trustme test CA, and the loopback DNS server resolves that name, so
every fetch goes through the resolver given, a real handshake and http.client.
"""

from __future__ import annotations

import datetime
import ssl
import time
from pathlib import Path

import pytest
import trustme
from support.dnsd import DnsServer, DnsServerFactory, Zone
from support.https import HttpsServer, HttpsServerFactory, Reply
from support.tls import client_context, self_signed_server_context, server_context

from mailstrom_py.delivery.routing.mta_sts import (
    MAX_POLICY_SIZE,
    PolicyFetcher,
    PolicyFetchError,
    StsMode,
    fetch_policy,
    policy_host,
)

PATH = "/.well-known/mta-sts.txt"
HOST = "mta-sts.d.test"
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.d.test\r\nmax_age: 86400\r\n"


@pytest.fixture
def dns(dns_server: DnsServerFactory) -> DnsServer:
    return dns_server(Zone().add(HOST, "A", "127.0.0.5"))


def serve(
    https_server: HttpsServerFactory, context: ssl.SSLContext, **replies: Reply
) -> HttpsServer:
    server = https_server(context, host="127.0.0.5")
    server.replies[PATH] = replies.pop("policy", Reply(body=POLICY))
    for name, reply in replies.items():
        server.replies["/" + name] = reply
    return server


@pytest.fixture
def good_context(ca: trustme.CA) -> ssl.SSLContext:
    return server_context(ca, HOST)


@pytest.fixture
def server(
    https_server: HttpsServerFactory, good_context: ssl.SSLContext
) -> HttpsServer:
    """The policy host with a valid certificate, serving POLICY."""
    return serve(https_server, good_context)


def fetch_error(
    server: HttpsServer, dns: DnsServer, ca: trustme.CA, **kwargs: object
) -> PolicyFetchError:
    with pytest.raises(PolicyFetchError) as caught:
        fetch_policy(
            "d.test",
            dns.resolver(),
            context=client_context(ca),
            port=server.port,
            **kwargs,  # type: ignore[arg-type]
        )
    return caught.value


def test_a_policy_is_fetched_from_the_well_known_path_of_its_host(
    https_server: HttpsServerFactory,
    dns: DnsServer,
    ca: trustme.CA,
    good_context: ssl.SSLContext,
) -> None:
    """GET https://mta-sts.d.test/.well-known/mta-sts.txt, the host found through the resolver."""
    server = serve(https_server, good_context)
    policy = fetch_policy(
        "D.test.", dns.resolver(), context=client_context(ca), port=server.port
    )
    assert (policy.mode, policy.mx, policy.max_age) == (
        StsMode.ENFORCE,
        ("mx.d.test",),
        86400,
    )
    assert server.requests == [(f"{HOST}:{server.port}", PATH)]
    assert (HOST, "A") in dns.queries
    assert policy_host("D.test.") == HOST


def test_a_fetcher_with_fixed_settings_fetches_the_same(
    https_server: HttpsServerFactory,
    dns: DnsServer,
    ca: trustme.CA,
    good_context: ssl.SSLContext,
) -> None:
    """PolicyFetcher(resolver, context, port)(domain) is fetch_policy with those settings."""
    server = serve(https_server, good_context)
    fetcher = PolicyFetcher(dns.resolver(), client_context(ca), port=server.port)
    assert fetcher("d.test").mx == ("mx.d.test",)


def test_a_fetcher_refuses_a_context_that_does_not_verify(dns: DnsServer) -> None:
    """A context without certificate or host name checks is a ValueError (§3.3)."""
    lax = ssl.create_default_context()
    lax.check_hostname = False
    with pytest.raises(ValueError, match="verifies"):
        PolicyFetcher(dns.resolver(), lax)
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_OPTIONAL
    with pytest.raises(ValueError, match="verifies"):
        PolicyFetcher(dns.resolver(), lax)


def test_the_default_context_trusts_the_cas_ssl_cert_file_names(
    server: HttpsServer,
    dns: DnsServer,
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a context the system's CAs apply (the test CA is refused), or SSL_CERT_FILE's."""
    with pytest.raises(PolicyFetchError) as caught:
        fetch_policy("d.test", dns.resolver(), port=server.port)
    assert caught.value.result_type == "sts-webpki-invalid"
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    assert (
        fetch_policy("d.test", dns.resolver(), port=server.port).mode is StsMode.ENFORCE
    )
    assert PolicyFetcher(dns.resolver(), port=server.port)("d.test").max_age == 86400


@pytest.mark.parametrize(
    "context",
    [
        pytest.param(lambda ca: server_context(ca, "other.d.test"), id="wrong-name"),
        pytest.param(lambda ca: self_signed_server_context(HOST), id="unknown-ca"),
        pytest.param(
            lambda ca: server_context(
                ca,
                HOST,
                not_before=datetime.datetime(2000, 1, 1),
                not_after=datetime.datetime(2001, 1, 1),
            ),
            id="expired",
        ),
    ],
)
def test_a_certificate_not_valid_for_the_host_is_a_webpki_failure(
    https_server: HttpsServerFactory,
    dns: DnsServer,
    ca: trustme.CA,
    context: object,
) -> None:
    """Wrong name, unknown CA or expiry: sts-webpki-invalid, and no request is sent."""
    server = serve(https_server, context(ca))  # type: ignore[operator]
    error = fetch_error(server, dns, ca)
    assert error.result_type == "sts-webpki-invalid"
    assert "certificate" in error.detail
    assert server.requests == []


@pytest.mark.parametrize("status", [301, 302, 404, 500])
def test_any_status_but_200_is_no_policy_and_redirects_are_not_followed(
    https_server: HttpsServerFactory,
    dns: DnsServer,
    ca: trustme.CA,
    good_context: ssl.SSLContext,
    status: int,
) -> None:
    """A 3xx pointing at a good policy is still a failure: one request only (§3.3)."""
    location = f"https://{HOST}:{{port}}/elsewhere"
    server = serve(
        https_server, good_context, elsewhere=Reply(body=POLICY), policy=Reply(status)
    )
    server.replies[PATH] = Reply(
        status, headers=(("Location", location.format(port=server.port)),)
    )
    error = fetch_error(server, dns, ca)
    assert error.result_type == "sts-policy-fetch-error"
    assert f"HTTP status {status}" in error.detail
    assert [path for _, path in server.requests] == [PATH]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_of_64_kib_is_read_and_one_byte_more_is_refused(
    https_server: HttpsServerFactory,
    dns: DnsServer,
    ca: trustme.CA,
    good_context: ssl.SSLContext,
    chunked: bool,
) -> None:
    """The size limit holds with a Content-Length and with chunked coding alike."""
    padding = b"pad: " + b"x" * (MAX_POLICY_SIZE - len(POLICY) - 7) + b"\r\n"
    body = POLICY + padding
    assert len(body) == MAX_POLICY_SIZE
    server = serve(https_server, good_context, policy=Reply(body=body, chunked=chunked))
    policy = fetch_policy(
        "d.test", dns.resolver(), context=client_context(ca), port=server.port
    )
    assert policy.extensions[0][0] == "pad"
    server.replies[PATH] = Reply(body=body + b"\n", chunked=chunked)
    error = fetch_error(server, dns, ca)
    assert error.result_type == "sts-policy-invalid"
    assert str(MAX_POLICY_SIZE) in error.detail


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("text/plain", True),
        ("Text/Plain; charset=utf-8", True),
        ("text/html", False),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_the_content_type_must_be_text_plain(
    server: HttpsServer,
    dns: DnsServer,
    ca: trustme.CA,
    content_type: str | None,
    ok: bool,
) -> None:
    """text/plain, with parameters or not, is a policy; other or no type is not (§3.2)."""
    server.replies[PATH] = Reply(body=POLICY, content_type=content_type)
    if ok:
        fetch_policy(
            "d.test", dns.resolver(), context=client_context(ca), port=server.port
        )
    else:
        assert fetch_error(server, dns, ca).result_type == "sts-policy-invalid"


@pytest.mark.parametrize("body", [b"version: STSv1\nmode: enforce\n", b"\xff\xfe"])
def test_an_invalid_body_is_an_invalid_policy(
    https_server: HttpsServerFactory,
    dns: DnsServer,
    ca: trustme.CA,
    good_context: ssl.SSLContext,
    body: bytes,
) -> None:
    """A policy missing fields, or not UTF-8, is sts-policy-invalid."""
    server = serve(https_server, good_context, policy=Reply(body=body))
    assert fetch_error(server, dns, ca).result_type == "sts-policy-invalid"


def test_a_server_dripping_its_reply_is_cut_off_at_the_deadline(
    https_server: HttpsServerFactory,
    dns: DnsServer,
    ca: trustme.CA,
    good_context: ssl.SSLContext,
) -> None:
    """A reply sent a byte every 50 ms (about 8 s in all) fails at the 1 s deadline."""
    server = serve(https_server, good_context, policy=Reply(body=POLICY, drip=0.05))
    started = time.monotonic()
    error = fetch_error(server, dns, ca, timeout=1.0)
    elapsed = time.monotonic() - started
    assert error.result_type == "sts-policy-fetch-error"
    assert 0.9 < elapsed < 2.5


def test_a_policy_host_without_an_address_is_a_fetch_error(
    dns_server: DnsServerFactory, ca: trustme.CA
) -> None:
    """No mta-sts.<domain> in the DNS: sts-policy-fetch-error, nothing dialled."""
    dns = dns_server(Zone().add("d.test", "MX", "10 mx.d.test"))
    with pytest.raises(PolicyFetchError) as caught:
        fetch_policy("d.test", dns.resolver(), context=client_context(ca), port=1)
    assert caught.value.result_type == "sts-policy-fetch-error"
    assert "no such host" in caught.value.detail


def test_a_refused_connection_is_a_fetch_error(
    ca: trustme.CA, refused_port: int, dns_server: DnsServerFactory
) -> None:
    """Nothing listening at the policy host: sts-policy-fetch-error naming the address."""
    zone = Zone().add(HOST, "A", "127.0.0.1")
    with pytest.raises(PolicyFetchError) as caught:
        fetch_policy(
            "d.test",
            dns_server(zone).resolver(),
            context=client_context(ca),
            port=refused_port,
        )
    assert caught.value.result_type == "sts-policy-fetch-error"
    assert "127.0.0.1" in caught.value.detail
