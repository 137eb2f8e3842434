"""The one SSRF guard for every outbound address a user can supply (REST source, webhook target, database
host).

- `check_host(host, port)` resolves a host once (getaddrinfo, every address) and refuses it when ANY
  address is loopback, private, link-local, multicast, reserved, unspecified, shared (100.64/10),
  site-local, or an IPv6 address that embeds such an IPv4 address (v4-mapped, v4-compatible, 6to4, NAT64,
  Teredo). Literal forms the OS accepts (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) are caught
  because the check looks at what getaddrinfo returns, not at the spelling.
- `check_url(url)` adds the scheme rule (http/https only) on top.
- `guarded_httpx_client()` / `guarded_async_httpx_client()` are httpx clients whose transport resolves and
  checks each host when it opens a connection and then connects to that vetted IP: there is no second
  DNS lookup to rebind, every redirect hop to a new host is checked the same way, and the URL is left as
  it was, so the Host header, TLS SNI and certificate verification still use the original hostname.
- `vetted_address(host, port)` gives database connectors the checked IP to connect to (psycopg
  `hostaddr`).

`settings.AGGREGATOR_ALLOWED_HOSTS` lists exact hostnames (case-insensitive) and CIDRs that an operator
lets through, e.g. a database on the same host (`127.0.0.1/32`). Errors name the host and the address,
never anything the remote side said.
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from collections.abc import Iterable
from dataclasses import dataclass

import anyio
import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from aggregator.logging import get_logger

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TIMEOUT = httpx.Timeout(10.0)
# Each hop is checked anyway; the cap only stops a redirect loop from holding a worker.
MAX_REDIRECTS = 5

_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: last 32 bits are IPv4

logger = get_logger(__name__)


class SSRFBlocked(ValueError):
    """The address may not be reached from this server. The message names the host, never a response."""


class HostLookupError(ValueError):
    """The host did not resolve (or is not a valid host name)."""


# --- Checking addresses -------------------------------------------------------------------------------


def _ipv4_refusal(ip: ipaddress.IPv4Address) -> str | None:
    # Order matters only for the message: 240/4 is both "reserved" and in Python's private list.
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _SHARED_ADDRESS_SPACE:
        return "shared address space"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    # Python 3.11 counts multicast as global, hence the explicit checks above; this catches the rest.
    if not ip.is_global:
        return "not globally reachable"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries, with what kind of embedding it is."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if int(ip) >> 32 == 0 and int(ip) > 1:  # ::a.b.c.d, the deprecated IPv4-compatible form
        return "IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why this address may not be reached (`"loopback"`, `"IPv4-mapped private"`, …), or None."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_refusal(ip)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        kind, ipv4 = embedded
        reason = _ipv4_refusal(ipv4)
        if reason is not None:
            return f"{kind} {reason}"
        if kind == "IPv4-mapped":
            # A socket to ::ffff:a.b.c.d reaches a.b.c.d itself, so the IPv4 verdict is the whole verdict.
            return None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_site_local:
        return "site-local"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally reachable"
    return None


@dataclass(frozen=True)
class _AllowList:
    hostnames: frozenset[str]
    networks: tuple[IPNetwork, ...]

    def allows_address(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)  # 127.0.0.1/32 also lets ::ffff:127.0.0.1 through
        return any(c in net for c in candidates for net in self.networks if c.version == net.version)


def _normalise_hostname(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _allow_list() -> _AllowList:
    """Read on every call, so a changed setting (or pytest-django's `settings` fixture) applies at once."""
    entries: Iterable[str] = getattr(settings, "AGGREGATOR_ALLOWED_HOSTS", None) or ()
    hostnames: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            if "/" in entry or ":" in entry:
                raise ImproperlyConfigured(
                    f"AGGREGATOR_ALLOWED_HOSTS entry {entry!r} is neither a host name nor a CIDR."
                ) from None
            hostnames.add(_normalise_hostname(entry))
    return _AllowList(frozenset(hostnames), tuple(networks))


def _resolve(host: str, port: int | None) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        # OSError covers socket.gaierror; UnicodeError/ValueError come from IDNA or a NUL in the name.
        raise HostLookupError(f"Host {host} could not be resolved") from exc
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise HostLookupError(f"Host {host} could not be resolved")
    return addresses


def check_host(host: str, port: int | None = None) -> list[IPAddress]:
    """Resolve `host` once and return its addresses if every one of them may be reached.

    Raises SSRFBlocked when any address is refused (one bad record is enough: a client could pick it)
    and HostLookupError when the host does not resolve.
    """
    name = _normalise_hostname(host)
    if not name:
        raise SSRFBlocked("An empty host is not allowed")
    addresses = _resolve(name, port)
    allow = _allow_list()
    if name in allow.hostnames:
        return addresses
    for ip in addresses:
        reason = refusal_reason(ip)
        if reason is not None and not allow.allows_address(ip):
            logger.warning("ssrf_blocked", host=name, address=str(ip), reason=reason)
            raise SSRFBlocked(f"Address {ip} of host {name} is not allowed ({reason})")
    return addresses


def _literal_address(name: str) -> IPAddress | None:
    """The address `name` spells without a DNS lookup: an IPv6 or dotted IPv4 literal, or one of the legacy
    IPv4 forms the resolver also accepts (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`)."""
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    if name and all(part for part in name.split(".")) and all(c in "0123456789abcdefx." for c in name):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    return None


def check_literal_host(host: str) -> None:
    """At save time, without resolving anything: refuse a host that IS a refused address (any spelling the
    resolver accepts) or a name that always means this machine (`localhost`, `*.localhost`), unless the
    allow-list lets it through. Names are checked when a connection is opened (`check_host`), since what
    they resolve to can change."""
    name = _normalise_hostname(host)
    allow = _allow_list()
    if not name or name in allow.hostnames:
        return
    if name == "localhost" or name.endswith(".localhost"):
        if not allow.allows_address(ipaddress.ip_address("127.0.0.1")):
            raise SSRFBlocked(f"Host {name} is this server (loopback) and is not allowed")
        return
    ip = _literal_address(name)
    if ip is None:
        return
    reason = refusal_reason(ip)
    if reason is not None and not allow.allows_address(ip):
        raise SSRFBlocked(f"Address {ip} of host {name} is not allowed ({reason})")


def check_url_literal(url: str) -> None:
    """`check_literal_host` for a URL's host (http/https only), for validating a URL when it is saved."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise SSRFBlocked(f"URL is not valid: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise SSRFBlocked(f"URL scheme '{parsed.scheme}' is not allowed")
    if parsed.raw_host:
        check_literal_host(parsed.raw_host.decode("ascii"))


def check_url(url: str) -> None:
    """Refuse a URL that is not http(s) or whose host may not be reached (SSRFBlocked); HostLookupError
    when its host does not resolve."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise SSRFBlocked(f"URL is not valid: {exc}") from None
    if not parsed.scheme:
        raise SSRFBlocked("URL has no scheme (use http:// or https://)")
    if parsed.scheme not in ("http", "https"):
        raise SSRFBlocked(f"URL scheme '{parsed.scheme}' is not allowed")
    if not parsed.raw_host:
        raise SSRFBlocked("URL has no host")
    # raw_host is what the transport will resolve (IDNA-encoded, IPv6 without brackets).
    check_host(parsed.raw_host.decode("ascii"), parsed.port)


def vetted_address(host: str, port: int | None = None) -> str:
    """The checked IP a database connector must connect to (psycopg: `hostaddr=`, keeping `host=` for
    TLS verification), so the driver does not resolve the name a second time."""
    return str(check_host(host, port)[0])


# --- httpx ----------------------------------------------------------------------------------------------


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore asks its backend to open every TCP connection: check the host there, then connect to the
    vetted address. httpcore does TLS on top with the original hostname (SNI and certificate check)."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = check_host(host, port)
        except HostLookupError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for ip in addresses:
            try:
                return self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.NetworkStream:
        raise SSRFBlocked("Unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            # getaddrinfo blocks; run it off the event loop.
            addresses = await anyio.to_thread.run_sync(check_host, host, port)
        except HostLookupError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, *args: typing.Any, **kwargs: typing.Any
    ) -> httpcore.AsyncNetworkStream:
        raise SSRFBlocked("Unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _install_backend(pool: object, backend: httpcore.NetworkBackend | httpcore.AsyncNetworkBackend) -> None:
    # httpx has no public hook for httpcore's network backend. The pool reads `_network_backend` each
    # time it opens a connection; fail loudly (tests cover this) if an upgrade renames it.
    if not isinstance(pool, httpcore.ConnectionPool | httpcore.AsyncConnectionPool) or not hasattr(
        pool, "_network_backend"
    ):
        raise RuntimeError("httpx/httpcore internals changed: the SSRF guard cannot install its backend")
    pool._network_backend = backend  # type: ignore[assignment]


_TRANSPORT_ARGS = ("verify", "cert", "http1", "http2", "limits", "retries", "local_address", "socket_options")
_REFUSED_ARGS = ("transport", "mounts", "proxy", "uds", "app")


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose every connection goes through check_host to the vetted address. No proxy
    or Unix socket: either would send the request somewhere the guard did not check."""

    def __init__(self, **kwargs: typing.Any) -> None:
        for name in ("proxy", "uds"):
            if kwargs.get(name):
                raise TypeError(f"{name!r} cannot be used with the SSRF guard")
        super().__init__(**kwargs)
        _install_backend(self._pool, _GuardedBackend())


class AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, **kwargs: typing.Any) -> None:
        for name in ("proxy", "uds"):
            if kwargs.get(name):
                raise TypeError(f"{name!r} cannot be used with the SSRF guard")
        super().__init__(**kwargs)
        _install_backend(self._pool, _AsyncGuardedBackend())


def _split_kwargs(kwargs: dict[str, typing.Any]) -> tuple[dict[str, typing.Any], dict[str, typing.Any]]:
    refused = [name for name in _REFUSED_ARGS if name in kwargs]
    if refused:
        raise TypeError(f"{', '.join(refused)} cannot be used with the SSRF guard")
    transport_kwargs = {name: kwargs.pop(name) for name in _TRANSPORT_ARGS if name in kwargs}
    kwargs.pop("trust_env", None)  # env proxies and .netrc would sidestep or surprise the guard
    kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
    kwargs["max_redirects"] = min(kwargs.get("max_redirects", MAX_REDIRECTS), MAX_REDIRECTS)
    return kwargs, transport_kwargs


def guarded_httpx_client(**kwargs: typing.Any) -> httpx.Client:
    """An httpx.Client for user-supplied URLs. Takes httpx.Client's arguments (verify, http2, limits, …
    go to the guarded transport); a proxy, custom transport or mounts are refused. Requests to a refused
    address, directly or through a redirect, raise SSRFBlocked."""
    client_kwargs, transport_kwargs = _split_kwargs(kwargs)
    return httpx.Client(transport=GuardedTransport(**transport_kwargs), trust_env=False, **client_kwargs)


def guarded_async_httpx_client(**kwargs: typing.Any) -> httpx.AsyncClient:
    """The httpx.AsyncClient counterpart of guarded_httpx_client."""
    client_kwargs, transport_kwargs = _split_kwargs(kwargs)
    return httpx.AsyncClient(
        transport=AsyncGuardedTransport(**transport_kwargs), trust_env=False, **client_kwargs
    )
