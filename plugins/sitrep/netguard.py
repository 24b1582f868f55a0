"""The SSRF guard: refuse to connect to loopback, private, link-local and reserved addresses.

Two checks, both before any packet is sent:

- :func:`check_url` runs on every URL and every redirect hop. It refuses other schemes, URLs
  without a host, and hosts that *are* an address in any spelling a resolver accepts (``2130706433``,
  ``0x7f000001``, ``0177.0.0.1``, ``127.1``, ``[::ffff:127.0.0.1]``, ``[64:ff9b::7f00:1]``...):
  they are decoded the way ``inet_aton`` decodes them, so string matching cannot be beaten.
- The transport's network backend resolves a host name once, checks every address it got, and
  connects to the checked address only, so a DNS answer that changes between check and connect
  (rebinding) has no window.

The same backend bounds each request's every read and write by its total timeout
(:func:`request_deadline`): httpx bounds each read alone, so a server sending its headers a byte at a
time, just inside the read timeout, would hold a request for days.

SITREP_ALLOW_PRIVATE_HOSTS turns the guard off (the demo). SITREP_ALLOWED_HOSTS lets exact
``address:port`` pairs through while the guard stays on for everything else (the tests).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from sitrep.errors import BlockedURLError, ConfigError
from sitrep.settings import port_number

__all__ = ["AddressPolicy", "GuardedTransport", "RefusedConnection", "check_url", "is_public_address",
           "parse_ip_literal", "request_deadline", "url_host", "url_origin", "without_credentials"]

log = logging.getLogger(__name__)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def url_host(url: str) -> str:
    """The ``host[:port]`` a URL talks to, lower-cased, without its user:password part.

    One key for politeness gates, feed names and webhook budgets, so that credentials in a URL
    never become a name shown in lists and logs, and ``user@host`` is the same host as ``host``.
    """
    return urlsplit(url).netloc.rpartition("@")[2].lower()


def without_credentials(url: str) -> str:
    """The URL as given, a user:password part shown as ``***@`` (for errors and logs: it may not parse)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if sep and "@" in authority:
        return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"
    return url


def url_origin(url: str) -> str:
    """``scheme://host[:port]``: the key of a connection pool and of a robots.txt."""
    return f"{urlsplit(url).scheme.lower()}://{url_host(url)}"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public_address(address: str | IPAddress) -> bool:
    """True only for a globally routable unicast address (IPv6 wrappers of IPv4 unwrapped)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_ipv4(ip) or ip
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local  # fec0::/10: is_global misses it
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and not site_local


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string spells, as a resolver would read it; None for a host name.

    IPv4 follows ``inet_aton``: one to four parts, each decimal, ``0x`` hex or ``0``-prefixed octal,
    the last part filling the remaining bytes (``127.1`` is 127.0.0.1, ``2130706433`` too).
    """
    host = host.strip().strip("[]").rstrip(".")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part, 8))
            else:
                numbers.append(int(part, 10) if part.isdigit() else -1)
        except ValueError:
            return None
        if numbers[-1] < 0:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, n in enumerate(head):
        value |= n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses we may connect to: public ones, plus any exact ``address:port`` allowed."""

    allow_private: bool = False
    allowed: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def build(cls, *, allow_private: bool, allowed_hosts: Iterable[str] = ()) -> AddressPolicy:
        pairs = set()
        for entry in allowed_hosts:
            host, _, port = entry.strip().rpartition(":")
            ip, number = parse_ip_literal(host), port_number(port)
            if ip is None or number is None:
                raise ConfigError(
                    f"SITREP_ALLOWED_HOSTS entry {entry!r} is not address:port (e.g. 127.0.0.1:8080 or [::1]:8080)"
                )
            pairs.add((str(ip), number))
        return cls(allow_private=allow_private, allowed=frozenset(pairs))

    def permits(self, address: str | IPAddress, port: int | None) -> bool:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self.allow_private or is_public_address(ip):
            return True
        return (str(ip), port) in self.allowed

    def refuse(self, where: str, address: str | IPAddress, url: str) -> BlockedURLError:
        log.warning("url=%s refused by the SSRF guard: %s is %s, not a public address", url, where, address)
        return BlockedURLError(
            f"can't fetch {url!r}: {where} is {address}, not a public address "
            "(SITREP_ALLOW_PRIVATE_HOSTS=1 is for tests and the demo only)",
            url=url,
            reason="blocked-address",
        )


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def check_url(url: str, policy: AddressPolicy | None = None) -> None:
    """Refuse, before any connection, what no fetch should do: other schemes, no host, blocked literals."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedURLError(f"can't fetch {url!r}: malformed URL ({exc})", url=url, reason="url") from None
    if parts.scheme not in {"http", "https"}:
        raise BlockedURLError(f"can't fetch {url!r}: only http and https URLs are fetched", url=url, reason="scheme")
    if not parts.hostname:
        raise BlockedURLError(f"can't fetch {url!r}: the URL has no host", url=url, reason="url")
    if parts.username or parts.password:
        raise BlockedURLError(f"can't fetch {url!r}: URLs with credentials are not fetched", url=url, reason="url")
    ip = parse_ip_literal(parts.hostname)
    if policy is not None and ip is not None:
        if not policy.permits(ip, port or _default_port(parts.scheme)):
            raise policy.refuse(f"host {parts.hostname!r}", ip, url)
        if str(ip) != parts.hostname.strip("[]").lower() and not policy.allow_private:
            # An odd spelling of a permitted address: fetch it only by its plain spelling.
            raise BlockedURLError(
                f"can't fetch {url!r}: host {parts.hostname!r} is an unusual spelling of {ip}", url=url, reason="url"
            )


class RefusedConnection(httpcore.ConnectError):
    """The guard's refusal on its way up through httpcore and httpx, which keep the exception
    object (but not always its ``__cause__``): ``blocked`` is the :class:`BlockedURLError`."""

    def __init__(self, blocked: BlockedURLError):
        super().__init__(str(blocked))
        self.blocked = blocked


_deadline = threading.local()


@contextmanager
def request_deadline(at: float) -> Iterator[None]:
    """This thread's reads and writes (the connect too) end by ``at``, a time.monotonic() value."""
    previous = getattr(_deadline, "at", None)
    _deadline.at = at
    try:
        yield
    finally:
        _deadline.at = previous


def _time_left(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    at = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = float(at) - time.monotonic()
    if left <= 0:
        raise error("past the request's total timeout")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends by the current request's deadline (request_deadline)."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname,
                                                      _time_left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host once, checks every address, and connects to a checked address only."""

    def __init__(self, policy: AddressPolicy):
        super().__init__()
        self.policy = policy

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        literal = parse_ip_literal(host)
        infos: list[tuple[Any, ...]]
        if literal is not None:
            infos = [(0, 0, 0, "", (str(literal), port))]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise httpcore.ConnectError(f"DNS lookup of {host!r} failed: {exc}") from exc
        last_error: Exception | None = None
        for _family, _type, _proto, _name, sockaddr in infos:
            address = str(sockaddr[0])
            if not self.policy.permits(address, port):
                last_error = self.policy.refuse(f"{host}:{port}", address, f"{host}:{port}")
                continue
            try:
                return _DeadlineStream(super().connect_tcp(address, port, _time_left(timeout, httpcore.ConnectTimeout),
                                                           local_address, socket_options))
            except httpcore.ConnectError as exc:
                last_error = exc
        if isinstance(last_error, BlockedURLError):
            raise RefusedConnection(last_error)
        raise last_error or httpcore.ConnectError(f"no address for {host!r}")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), built once per
    process and shared by every transport: building one loads the CA bundle, 50 ms of CPU, and the
    Fetcher makes a transport per origin (25 feeds of 25 sites: 1.25 s per task, before)."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.HTTPTransport):
    """httpx transport whose connections go through the guarded backend."""

    def __init__(self, *, policy: AddressPolicy | None = None, allow_private: bool = False, **kwargs: object):
        kwargs.setdefault("verify", tls_context())
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.policy = policy or AddressPolicy(allow_private=allow_private)
        self._pool._network_backend = _GuardedBackend(self.policy)
