"""One HTTP client for feeds, pages and robots.txt: bounded, polite and guarded against SSRF.

Usage::

    with Fetcher(settings.fetch) as fetcher:
        response = fetcher.get(url, max_bytes=settings.fetch.max_feed_bytes)
        results = fetcher.get_many(urls)          # Response or FetchError per URL, in order

Every URL comes from outside, so every request and every redirect hop is checked by the SSRF guard
(see ``sitrep.netguard``), bodies are read as a stream and cut off at a size cap, and a failure of one
URL is returned as a :class:`FetchError` value, never raised through a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import httpx

from sitrep.errors import BlockedURLError, FetchError
from sitrep.netguard import GuardedTransport, check_url
from sitrep.settings import FetchSettings

__all__ = ["Fetcher", "Response"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Response:
    """A fetched body (possibly cut at the cap: ``truncated``) and what the server said about it."""

    url: str
    final_url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    fetched_at: datetime
    elapsed: float
    truncated: bool = False

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class _HostGate:
    """At most K requests in flight per host, and a minimum delay between their starts."""

    concurrency: int
    delay: float
    _sem: threading.Semaphore = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_start: float = 0.0

    def __post_init__(self) -> None:
        self._sem = threading.Semaphore(self.concurrency)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._sem:
            with self._lock:
                now = time.monotonic()
                wait = self._next_start - now
                self._next_start = max(now, self._next_start) + self.delay
            if wait > 0:
                time.sleep(wait)
            yield


class Fetcher:
    """An httpx client with our timeouts, caps, retries, politeness and SSRF guard."""

    def __init__(self, settings: FetchSettings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        self._client = httpx.Client(
            transport=transport or GuardedTransport(allow_private=settings.allow_private_hosts),
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,
            trust_env=False,
        )
        self._gates: dict[str, _HostGate] = defaultdict(
            lambda: _HostGate(settings.per_host_concurrency, settings.per_host_delay)
        )
        self._gates_lock = threading.Lock()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _gate(self, url: str) -> _HostGate:
        host = urlsplit(url).netloc.lower()
        with self._gates_lock:
            return self._gates[host]

    def get(self, url: str, *, max_bytes: int | None = None, headers: Mapping[str, str] | None = None) -> Response:
        """Fetch one URL following redirects (each hop checked); raise FetchError on failure."""
        max_bytes = max_bytes or self.settings.max_page_bytes
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._gate(url).slot():
                    response = self._get_once(url, max_bytes=max_bytes, headers=headers or {})
            except BlockedURLError:
                raise
            except FetchError as exc:
                if exc.reason in {"timeout", "connect"} and attempt <= self.settings.retries:
                    time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
                    continue
                raise
            if response.status in _RETRY_STATUSES and attempt <= self.settings.retries:
                time.sleep(_retry_after(response.headers, attempt))
                continue
            return response

    def _get_once(self, url: str, *, max_bytes: int, headers: Mapping[str, str]) -> Response:
        started = time.monotonic()
        deadline = started + self.settings.total_timeout
        current = url
        for _hop in range(self.settings.max_redirects + 1):
            check_url(current)
            try:
                with self._client.stream("GET", current, headers=dict(headers)) as raw:
                    if raw.status_code in (301, 302, 303, 307, 308):
                        location = raw.headers.get("location")
                        if not location:
                            raise FetchError(f"can't fetch {url!r}: redirect without Location", url=url, reason="redirect")
                        current = urljoin(current, location)
                        continue
                    body, truncated = _read_capped(raw, max_bytes, deadline, url)
                    return Response(
                        url=url,
                        final_url=str(raw.url),
                        status=raw.status_code,
                        headers={k.lower(): v for k, v in raw.headers.items()},
                        body=body,
                        fetched_at=datetime.now(UTC),
                        elapsed=time.monotonic() - started,
                        truncated=truncated,
                    )
            except httpx.TimeoutException as exc:
                raise FetchError(f"can't fetch {url!r}: timed out ({exc.__class__.__name__})", url=url, reason="timeout") from exc
            except httpx.TransportError as exc:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, BlockedURLError):
                    raise cause from exc
                raise FetchError(f"can't fetch {url!r}: {exc or exc.__class__.__name__}", url=url, reason="connect") from exc
        raise FetchError(
            f"can't fetch {url!r}: more than {self.settings.max_redirects} redirects", url=url, reason="redirects"
        )

    def get_many(
        self, urls: Sequence[str], *, max_bytes: int | None = None
    ) -> list[Response | FetchError]:
        """Fetch many URLs concurrently within the per-host limits; one result per URL, in order."""
        if not urls:
            return []

        def one(url: str) -> Response | FetchError:
            try:
                return self.get(url, max_bytes=max_bytes)
            except FetchError as exc:
                log.warning("fetch failed: url=%s reason=%s: %s", url, exc.reason, exc)
                return exc

        workers = min(self.settings.global_concurrency, len(urls))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sitrep-fetch") as pool:
            return list(pool.map(one, urls))


def _read_capped(raw: httpx.Response, max_bytes: int, deadline: float, url: str) -> tuple[bytes, bool]:
    """Read a streamed body up to max_bytes (decoded size, so a gzip bomb stops at the cap too)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in raw.iter_bytes():
        if time.monotonic() > deadline:
            raise FetchError(f"can't fetch {url!r}: slower than the total timeout", url=url, reason="timeout")
        size += len(chunk)
        if size > max_bytes:
            chunks.append(chunk[: max(0, max_bytes - (size - len(chunk)))])
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False


def _retry_after(headers: Mapping[str, str], attempt: int) -> float:
    """Seconds to wait before retrying: Retry-After when the server gave it (capped), else backoff."""
    value = headers.get("retry-after", "")
    if value.isdigit():
        return min(float(value), 30.0)
    return min(0.5 * 2 ** (attempt - 1), 4.0)
