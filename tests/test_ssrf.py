"""The SSRF guard: refused addresses in every spelling, the allow-list, and httpx clients against real local
HTTP(S) servers (no test needs the internet: public addresses are literals, or DNS is faked)."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ImproperlyConfigured

from aggregator.ssrf import (
    MAX_REDIRECTS,
    HostLookupError,
    SSRFBlocked,
    check_host,
    check_url,
    guarded_async_httpx_client,
    guarded_httpx_client,
    vetted_address,
)

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _no_allow_list(settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = []


def fake_dns(monkeypatch, answers: dict[str, list[str]]) -> dict[str, int]:
    """Make getaddrinfo answer `answers[name]` (one address per call, the last one repeating) for the
    given names and resolve everything else for real. Returns the lookup count per faked name."""
    calls = dict.fromkeys(answers, 0)

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in answers:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        address = answers[name][min(calls[name], len(answers[name]) - 1)]
        calls[name] += 1
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port or 0, 0, 0) if family == socket.AF_INET6 else (address, port or 0)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


# --- check_host / check_url -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("LOCALHOST.", "loopback"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared address space"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:7f00:1", "IPv4-mapped loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
        ("::127.0.0.1", "IPv4-compatible loopback"),
        ("2002:a00:1::", "6to4 private"),
        ("64:ff9b::a9fe:a9fe", "NAT64 link-local"),
        ("2130706433", "loopback"),
        ("0x7f000001", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("0", "unspecified"),
    ],
)
def test_check_host_refuses_internal_addresses_in_every_spelling(host, reason):
    with pytest.raises(SSRFBlocked) as excinfo:
        check_host(host, 80)
    message = str(excinfo.value)
    assert message.endswith(f"is not allowed ({reason})")
    assert "of host " in message


def test_refusal_names_the_address_and_the_host():
    with pytest.raises(
        SSRFBlocked, match=r"^Address (127\.0\.0\.1|::1) of host localhost is not allowed \(loopback\)$"
    ):
        check_host("localhost")


@pytest.mark.parametrize("host", [PUBLIC_V4, PUBLIC_V6, f"[{PUBLIC_V6}]", "::ffff:93.184.215.14"])
def test_check_host_accepts_a_public_literal_without_network(host):
    assert [str(ip) for ip in check_host(host, 443)] in ([PUBLIC_V4], [PUBLIC_V6], ["::ffff:5db8:d70e"])


def test_one_internal_record_among_public_ones_refuses_the_host(monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_V4, 80)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 80)),
        ],
    )
    with pytest.raises(
        SSRFBlocked, match=r"Address 10\.0\.0\.7 of host mixed\.test is not allowed \(private\)"
    ):
        check_host("mixed.test", 80)


def test_check_host_returns_every_vetted_address_once(monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_V4, 80)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (PUBLIC_V6, 80, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_V4, 80)),
        ],
    )
    assert check_host("example.test", 80) == [
        ipaddress.ip_address(PUBLIC_V4),
        ipaddress.ip_address(PUBLIC_V6),
    ]


def test_unresolvable_host_is_a_lookup_error_not_a_block(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(HostLookupError, match=r"^Host nowhere\.test could not be resolved$"):
        check_host("nowhere.test")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1/", r"Address 127\.0\.0\.1 of host 127\.0\.0\.1 is not allowed \(loopback\)"),
        ("http://localhost:8000/x", r"Address 127\.0\.0\.1 of host localhost is not allowed \(loopback\)"),
        ("http://[::1]/", r"Address ::1 of host ::1 is not allowed \(loopback\)"),
        ("https://[::ffff:127.0.0.1]:8443/", r"\(IPv4-mapped loopback\)"),
        ("http://user@127.0.0.1/", r"of host 127\.0\.0\.1 is not allowed \(loopback\)"),
        ("http://user:secret@10.0.0.1/", r"of host 10\.0\.0\.1 is not allowed \(private\)"),
        ("http://169.254.169.254/latest/meta-data/", r"\(link-local\)"),
        ("http://2130706433/", r"of host 2130706433 is not allowed \(loopback\)"),
        ("http://0x7f000001/", r"of host 0x7f000001 is not allowed \(loopback\)"),
        ("http://127.1:8080/", r"of host 127\.1 is not allowed \(loopback\)"),
        ("http://0177.0.0.1/", r"URL is not valid"),  # httpx refuses the URL before it could be fetched
        ("file:///etc/passwd", r"^URL scheme 'file' is not allowed$"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", r"^URL scheme 'gopher' is not allowed$"),
        ("ftp://example.com/", r"^URL scheme 'ftp' is not allowed$"),
        ("example.com/path", r"URL has no scheme"),
        ("http:///path", r"URL has no host"),
    ],
)
def test_check_url_refuses(url, message):
    with pytest.raises(SSRFBlocked, match=message) as excinfo:
        check_url(url)
    assert "secret" not in str(excinfo.value)


def test_check_url_accepts_a_public_http_url():
    assert check_url(f"https://{PUBLIC_V4}/api/v1/items?page=2") is None
    assert check_url(f"http://[{PUBLIC_V6}]:8080/") is None


def test_vetted_address_is_the_checked_ip(monkeypatch):
    calls = fake_dns(monkeypatch, {"db.example.test": [PUBLIC_V4, "127.0.0.1"]})
    assert vetted_address("db.example.test", 5432) == PUBLIC_V4
    assert calls["db.example.test"] == 1
    with pytest.raises(SSRFBlocked, match=r"of host db\.example\.test is not allowed \(loopback\)"):
        vetted_address("db.example.test", 5432)


# --- allow-list ---------------------------------------------------------------------------------------


def test_allow_list_cidr_lets_exactly_that_range_through(settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert check_host("127.0.0.1") == [ipaddress.ip_address("127.0.0.1")]
    assert check_host("2130706433") == [ipaddress.ip_address("127.0.0.1")]
    assert check_host("10.20.30.40") == [ipaddress.ip_address("10.20.30.40")]
    assert check_host("::1") == [ipaddress.ip_address("::1")]
    assert check_host("::ffff:127.0.0.1") == [ipaddress.ip_address("::ffff:127.0.0.1")]
    assert vetted_address("127.0.0.1", 5432) == "127.0.0.1"
    for refused in ("127.0.0.2", "192.168.0.1", "169.254.169.254", "::2"):
        with pytest.raises(SSRFBlocked):
            check_host(refused)


def test_allow_list_bare_ip_is_a_single_address(settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1"]
    assert check_host("127.0.0.1")
    with pytest.raises(SSRFBlocked):
        check_host("127.0.0.2")


def test_allow_list_hostname_is_exact_and_case_insensitive(settings, monkeypatch):
    fake_dns(monkeypatch, {"db.internal": ["10.1.1.1"], "other.internal": ["10.1.1.1"]})
    settings.AGGREGATOR_ALLOWED_HOSTS = ["DB.Internal"]
    assert check_host("db.internal") == [ipaddress.ip_address("10.1.1.1")]
    assert check_host("db.INTERNAL.") == [ipaddress.ip_address("10.1.1.1")]
    with pytest.raises(SSRFBlocked, match=r"of host other\.internal"):
        check_host("other.internal")


def test_allow_list_entry_that_is_neither_host_nor_cidr_is_a_configuration_error(settings):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["10.0.0.0/33"]
    with pytest.raises(ImproperlyConfigured, match=r"10\.0\.0\.0/33"):
        check_host(PUBLIC_V4)


# --- httpx clients against real local servers -----------------------------------------------------------


@dataclass
class LocalServer:
    host: str
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _start_server(host: str, port: int = 0, tls: ssl.SSLContext | None = None) -> Iterator[LocalServer]:
    state = LocalServer(host, port)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append((self.path, self.headers.get("Host", "")))
            parts = urlsplit(self.path)
            if parts.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", parse_qs(parts.query)["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if parts.path == "/loop":
                self.send_response(302)
                self.send_header("Location", "/loop")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = f"hello from {host}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    yield from _start_server("127.0.0.1")


@pytest.fixture
def second_loopback_server(local_server) -> Iterator[LocalServer]:
    """A server on 127.0.0.2 at the same port: where a rebinding attacker would like the client to go."""
    yield from _start_server("127.0.0.2", local_server.port)


def test_client_refuses_a_local_server_without_allow_list(local_server):
    with guarded_httpx_client() as client, pytest.raises(SSRFBlocked, match=r"127\.0\.0\.1.*\(loopback\)"):
        client.get(f"{local_server.url}/")
    assert local_server.requests == []


def test_client_reaches_a_local_server_on_the_allow_list(settings, local_server):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    with guarded_httpx_client() as client:
        response = client.get(f"{local_server.url}/")
    assert response.status_code == 200
    assert response.text == "hello from 127.0.0.1"
    assert local_server.requests == [("/", f"127.0.0.1:{local_server.port}")]


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:{port}/"])
def test_redirect_to_a_refused_address_is_not_followed(settings, local_server, target):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    location = target.format(port=local_server.port)
    with guarded_httpx_client(follow_redirects=True) as client, pytest.raises(SSRFBlocked) as excinfo:
        client.get(f"{local_server.url}/redirect", params={"to": location})
    assert "is not allowed" in str(excinfo.value)
    # Only the first hop reached a server; the refused hop was never connected to.
    assert len(local_server.requests) == 1
    assert local_server.requests[0][0].startswith("/redirect?to=")


def test_redirects_are_capped(settings, local_server):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    client = guarded_httpx_client(follow_redirects=True, max_redirects=50)
    with client, pytest.raises(httpx.TooManyRedirects):
        client.get(f"{local_server.url}/loop")
    assert len(local_server.requests) == MAX_REDIRECTS + 1


def test_dns_rebinding_cannot_swap_the_address_after_the_check(monkeypatch):
    """First answer public (passes), every later answer loopback: the client must connect to the first."""
    calls = fake_dns(monkeypatch, {"rebind.test": [PUBLIC_V4, "127.0.0.1"]})
    connected_to: list[str] = []

    def record_connect(self, host, port, *args, **kwargs):
        connected_to.append(host)
        raise httpcore.ConnectError("no internet in tests")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", record_connect)
    with guarded_httpx_client() as client, pytest.raises(httpx.ConnectError):
        client.get("http://rebind.test/")
    assert connected_to == [PUBLIC_V4]
    assert calls["rebind.test"] == 1


def test_dns_rebinding_against_real_servers_reaches_only_the_vetted_one(
    settings, monkeypatch, local_server, second_loopback_server
):
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    calls = fake_dns(monkeypatch, {"rebind.test": ["127.0.0.1", "127.0.0.2"]})
    with guarded_httpx_client() as client:
        response = client.get(f"http://rebind.test:{local_server.port}/")
    assert response.text == "hello from 127.0.0.1"
    assert calls["rebind.test"] == 1
    # The URL was not rewritten: the server saw the original Host header.
    assert local_server.requests == [("/", f"rebind.test:{local_server.port}")]
    assert second_loopback_server.requests == []
    # A fresh lookup now answers 127.0.0.2, which the guard refuses rather than following.
    with (
        guarded_httpx_client() as client,
        pytest.raises(SSRFBlocked, match=r"127\.0\.0\.2 of host rebind\.test"),
    ):
        client.get(f"http://rebind.test:{local_server.port}/")
    assert second_loopback_server.requests == []


def _self_signed(tmp_path: Path, hostname: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[LocalServer, Path]]:
    cert_path, key_path = _self_signed(tmp_path, "secure.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    for server in _start_server("127.0.0.1", tls=server_context):
        yield server, cert_path


def test_tls_is_verified_against_the_original_hostname(settings, monkeypatch, tls_server):
    server, cert_path = tls_server
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    fake_dns(monkeypatch, {"secure.test": ["127.0.0.1"]})
    trust = ssl.create_default_context(cafile=str(cert_path))
    with guarded_httpx_client(verify=trust) as client:
        response = client.get(f"https://secure.test:{server.port}/")
    assert response.text == "hello from 127.0.0.1"
    # The same server by IP does not match the certificate: verification really uses the name.
    with guarded_httpx_client(verify=trust) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://127.0.0.1:{server.port}/")


async def test_async_client_is_guarded_the_same_way(settings, local_server):
    async with guarded_async_httpx_client(follow_redirects=True) as client:
        with pytest.raises(SSRFBlocked, match=r"\(loopback\)"):
            await client.get(f"{local_server.url}/")
    settings.AGGREGATOR_ALLOWED_HOSTS = ["127.0.0.1/32"]
    async with guarded_async_httpx_client(follow_redirects=True) as client:
        response = await client.get(f"{local_server.url}/")
        assert response.text == "hello from 127.0.0.1"
        with pytest.raises(SSRFBlocked, match=r"169\.254\.169\.254"):
            await client.get(f"{local_server.url}/redirect", params={"to": "http://169.254.169.254/"})


@pytest.mark.parametrize("factory", [guarded_httpx_client, guarded_async_httpx_client], ids=["sync", "async"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"proxy": "http://proxy.test:3128"},
        {"transport": httpx.HTTPTransport()},
        {"mounts": {}},
        {"uds": "/var/run/docker.sock"},
    ],
    ids=["proxy", "transport", "mounts", "uds"],
)
def test_clients_refuse_options_that_would_bypass_the_guard(factory: Callable, kwargs):
    with pytest.raises(TypeError, match="cannot be used with the SSRF guard"):
        factory(**kwargs)


def test_client_defaults_are_sane():
    with guarded_httpx_client() as client:
        assert client.timeout == httpx.Timeout(10.0)
        assert client.max_redirects == MAX_REDIRECTS
        assert client.trust_env is False
