"""One HTTP client for feeds, pages and robots.txt: bounded, polite and guarded against SSRF.

Usage::

    with Fetcher(settings.fetch) as fetcher:
        response = fetcher.get(url, max_bytes=settings.fetch.max_feed_bytes)   # a feed, as bytes
        results = fetcher.get_many(urls)     # pages: Response or FetchError per URL, in order
        fetcher.stats                        # requests, retries, blocked, robots_disallowed, ...

Every URL comes from outside, so:

- every request and every redirect hop is checked by the SSRF guard (``sitrep.netguard``), both on
  the URL (address literals in any spelling) and on the address the socket connects to;
- bodies are read as a stream, decompressed by us with a bound on every step, cut at a size cap, and
  refused when they inflate like a decompression bomb; a body slower than the total timeout is cut;
- pages are checked against robots.txt (``sitrep.robots``), skipped unread when they are not HTML,
  and handed on as UTF-8 (charset from the BOM, the headers or the page's meta, else detected);
- per host at most K requests run at once with a minimum delay between starts, and at most N overall;
- timeouts, connection errors and 5xx are retried with exponential backoff and jitter; 4xx are not,
  except 429, and a Retry-After longer than ``max_retry_wait`` is returned to the caller (who pushes
  the next poll back) instead of slept through.

A failure of one URL is a :class:`FetchError` (returned by ``get_many``, raised by ``get``), never
an exception through a batch.
"""

from __future__ import annotations

import codecs
import html
import itertools
import logging
import random
import re
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx
from charset_normalizer import from_bytes

from sitrep.errors import BlockedURLError, FetchError
from sitrep.logctx import about_feed, subject
from sitrep.netguard import (
    AddressPolicy,
    GuardedTransport,
    RefusedConnection,
    check_url,
    request_deadline,
    url_host,
    url_origin,
)
from sitrep.robots import RobotsCache
from sitrep.settings import FetchSettings

__all__ = ["Fetcher", "Response", "html_charset", "retry_after_seconds"]

log = logging.getLogger(__name__)

#: Decoded bytes read per step: the most a single compressed chunk can make us hold at once.
_STEP = 64 * 1024
#: A compressed body is judged by its inflation ratio only once it has decoded this much.
_BOMB_FLOOR = 1024 * 1024
#: An origin's connection pool unused this long is closed (httpx's own keep-alive expiry is 5 s).
_POOL_IDLE_SECONDS = 10.0
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0
_REDIRECTS = {301, 302, 303, 307, 308}
#: Content types read as pages; anything else is skipped without reading the body.
PAGE_TYPES = frozenset({"", "text/html", "application/xhtml+xml", "text/plain", "application/xml", "text/xml"})
#: Charsets tried, in order of preference, when a page declares none and is not UTF-8.
_GUESSES = ("cp1252", "cp1251", "cp1250", "cp1256", "cp1253", "cp1255", "cp1254", "koi8_r", "gb18030", "big5",
            "shift_jis", "euc_kr", "iso8859_15")
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{1,40})""", re.I)
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]{0,200}?encoding\s*=\s*["']([a-zA-Z0-9_.:-]{1,40})["']""")
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


@dataclass(frozen=True)
class Response:
    """A fetched body (possibly cut at the cap: ``truncated``) and what the server said about it.

    ``skipped`` says why the body was not read at all (a page that is not HTML). Pages fetched with
    ``get_many`` are UTF-8 and ``encoding`` names the charset they were decoded from.
    """

    url: str
    final_url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    fetched_at: datetime
    elapsed: float
    truncated: bool = False
    skipped: str | None = None
    encoding: str | None = None
    redirects: int = 0
    attempts: int = 1

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (Retry-After, in seconds or as a date), if it did."""
        return retry_after_seconds(self.headers.get("retry-after"))


#: The longest wait a Retry-After can ask for (a year): beyond it the value is a server's mistake, and
#: poll_log keeps it as an integer of seconds.
MAX_RETRY_AFTER = 365 * 86400.0


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (seconds, or an HTTP date), at most MAX_RETRY_AFTER."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "\u00b2": str.isdigit() takes it, float() does not
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - (now or datetime.now(UTC))).total_seconds()), MAX_RETRY_AFTER)


@dataclass
class _HostGate:
    """At most K requests in flight per host, and a minimum delay between their starts.

    Each request holds one of the K lanes (0..K-1) while it runs; the Fetcher keeps a connection pool
    per origin and lane, so a lane's pool serves one request at a time.
    """

    concurrency: int
    delay: float
    _sem: threading.Semaphore = field(init=False)
    _lanes: list[int] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_start: float = 0.0

    def __post_init__(self) -> None:
        self._sem = threading.Semaphore(self.concurrency)
        self._lanes = list(range(self.concurrency))

    @contextmanager
    def slot(self, not_after: float | None = None) -> Iterator[int]:
        """A lane, once the host's delay allows; _Deferred instead when that is past ``not_after``."""
        with self._sem:
            with self._lock:
                now = time.monotonic()
                wait = self._next_start - now
                if not_after is not None and now + max(wait, 0.0) > not_after:
                    raise _Deferred(max(wait, 0.0))
                lane = self._lanes.pop()
                self._next_start = max(now, self._next_start) + self.delay
            try:
                if wait > 0:
                    time.sleep(wait)
                yield lane
            finally:
                with self._lock:
                    self._lanes.append(lane)


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: about 0.5 s, 1 s, 2 s... never more than the cap."""
    return min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


@dataclass(eq=False)
class _OriginPool:
    """One origin's httpx client (its connection pool), with the requests using it right now."""

    client: httpx.Client
    busy: int = 0
    last_used: float = 0.0


class Fetcher:
    """An httpx client with our timeouts, caps, retries, politeness, robots.txt and SSRF guard."""

    def __init__(self, settings: FetchSettings, *, transport: httpx.BaseTransport | None = None,
                 not_after: float | None = None, task: str = "collect"):
        """``not_after``: a time.monotonic() after which no request starts (FetchError reason
        ``deferred``: the caller leaves the URL for later); ``task`` names the budget in that error."""
        self.settings = settings
        self.not_after, self.task = not_after, task
        self.policy = AddressPolicy.build(allow_private=settings.allow_private_hosts,
                                          allowed_hosts=settings.allowed_hosts)
        self._transport = transport
        self._pools: dict[tuple[str, int], _OriginPool] = {}
        self._pools_lock = threading.Lock()
        self._closed = False
        self._gates: dict[str, _HostGate] = defaultdict(
            lambda: _HostGate(settings.per_host_concurrency, settings.per_host_delay)
        )
        self._gates_lock = threading.Lock()
        self._global = threading.Semaphore(settings.global_concurrency)
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self.robots = RobotsCache(self)

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._pools_lock:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.client.close()

    def _new_client(self) -> httpx.Client:
        settings = self.settings
        return httpx.Client(
            transport=self._transport or GuardedTransport(
                policy=self.policy,
                limits=httpx.Limits(max_connections=settings.global_concurrency,
                                    max_keepalive_connections=settings.per_host_concurrency)),
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False,
            trust_env=False,
        )

    @contextmanager
    def _client_for(self, url: str, lane: int) -> Iterator[httpx.Client]:
        """The connection pool of url's origin and the host gate's ``lane``, held for one request.

        One pool per origin and lane, not one for all: httpcore 1.0.x walks every connection of a pool,
        several times each and with a poll() on each idle socket, under the pool's lock, for every
        request it starts and finishes (encode/httpcore#1035); one pool for 8 loopback hosts cost 2.9 ms
        of client CPU per 111 KB page, a pool per origin 2.4; a pool per lane (one connection, nobody
        waiting on its lock) 1.92 against 2.07 for a pool per origin (3000 pages, 16 lanes per host,
        medians of four alternating rounds). An origin has at most per_host_concurrency lanes (the host
        gate), each pool at most that many connections (only redirects from other hosts share a lane), its
        keep-alive limit, so it never evicts "surplus" connections either (the eviction that can close
        a connection just handed to a waiting request, encode/httpcore#1110). A pool unused for
        ``_POOL_IDLE_SECONDS`` is closed, so hundreds of hosts never pile up idle sockets. An injected
        transport (tests) is shared by one pool that is never closed early.
        """
        key = ("", 0) if self._transport is not None else (url_origin(url), lane)
        with self._pools_lock:
            if self._closed:
                raise ClosedFetcherError("this Fetcher is closed: use a new one (with Fetcher(settings) as fetcher: ...)")
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _OriginPool(self._new_client())
                if self._transport is None:
                    self._close_idle_pools()
            pool.busy += 1
        try:
            yield pool.client
        finally:
            with self._pools_lock:
                pool.busy -= 1
                pool.last_used = time.monotonic()

    def _close_idle_pools(self) -> None:
        """Close the pools nobody used for a while (called with _pools_lock held)."""
        now = time.monotonic()
        for key, pool in list(self._pools.items()):
            if pool.busy == 0 and pool.last_used and now - pool.last_used > _POOL_IDLE_SECONDS:
                del self._pools[key]
                pool.client.close()

    @property
    def stats(self) -> dict[str, int]:
        """What happened so far: requests, retries, blocked, robots_disallowed, not_html, bombs..."""
        with self._stats_lock:
            return dict(self._stats)

    def count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[key] += n

    def _gate(self, url: str) -> _HostGate:
        with self._gates_lock:
            return self._gates[url_host(url)]

    def slow_down(self, url: str, delay: float) -> None:
        """Raise the minimum delay between requests to url's host (robots.txt Crawl-delay)."""
        gate = self._gate(url)
        gate.delay = max(gate.delay, delay)

    # ------------------------------------------------------------------------------------ one URL

    def get(
        self,
        url: str,
        *,
        max_bytes: int | None = None,
        headers: Mapping[str, str] | None = None,
        accept_types: frozenset[str] | None = None,
        robots: bool = False,
    ) -> Response:
        """Fetch one URL following redirects (each hop checked); raise FetchError on failure.

        With ``accept_types``, a 200 response of another content type is returned unread, with
        ``skipped`` saying why. With ``robots``, every redirect hop must be allowed by its host's
        robots.txt (get_page checks the URL itself first). Any other exception (a case nobody foresaw, a bug) is this URL's
        FetchError too, reason ``unexpected``, logged with its traceback: one URL never fails its batch.
        """
        try:
            return self._get(url, max_bytes=max_bytes, headers=headers, accept_types=accept_types, robots=robots)
        except (FetchError, ClosedFetcherError):  # the URL's failure; the caller's mistake
            raise
        except Exception as exc:
            self.count("unexpected")
            log.exception("%s unexpected %s while fetching it", subject(url), type(exc).__name__)
            raise FetchError(f"can't fetch {url!r}: unexpected {type(exc).__name__} ({exc}); the traceback is in the log",
                             url=url, reason="unexpected") from exc

    def _get(self, url: str, *, max_bytes: int | None, headers: Mapping[str, str] | None,
             accept_types: frozenset[str] | None, robots: bool) -> Response:
        max_bytes = max_bytes or self.settings.max_page_bytes
        attempt = 0
        current, hops = url, 0  # a redirect to another host goes on from there, under that host's gate
        last: FetchError | Response | None = None  # the try before a retry, if the budget ends the retries
        while True:
            attempt += 1
            try:
                with self._gate(current).slot(self.not_after) as lane, self._global:  # no global slot held while a host makes us wait
                    if not hops:
                        self.count("requests")
                    response = self._get_once(url, current, hops, lane, max_bytes=max_bytes, headers=headers or {},
                                              accept_types=accept_types, robots=robots)
            except _Elsewhere as hop:
                # Outside the slots: the next host's robots.txt (a request of its own) when it isn't known
                # yet, then the redirect's target in that host's gate (its lanes and delay), as if the
                # target had been the link.
                attempt -= 1
                if robots and not self.robots.allowed(hop.url):
                    raise self._disallowed(url, hop.url) from None
                current, hops = hop.url, hop.hops
                continue
            except _Deferred as late:
                # A retry past the budget: what the last try got stands (else a feed that always fails
                # late in the run would never be recorded as failing, never backed off).
                if isinstance(last, Response):
                    return replace(last, attempts=attempt - 1)
                if isinstance(last, FetchError):
                    tries = "tried once" if attempt == 2 else f"after {attempt - 1} tries"
                    raise FetchError(f"{last} ({tries}; no time left in this run for more)",
                                     url=last.url, reason=last.reason) from last
                self.count("deferred")
                delay = f"its host's delay between requests ({late.wait:.0f} s to go) runs" if late.wait > 0 else "it would start"
                raise FetchError(f"can't fetch {url!r} in this run: {delay} past the {self.task}'s time"
                                 f" (SITREP_{self.task.upper()}_BUDGET); left for the next run",
                                 url=url, reason="deferred") from None
            except BlockedURLError:
                self.count("blocked")
                raise
            except FetchError as exc:
                self.count(exc.reason)
                if exc.reason in {"timeout", "connect"} and attempt <= self.settings.retries:
                    last = exc
                    self.count("retries")
                    log.info("%s retrying after %s (attempt %d)", subject(url), exc.reason, attempt)
                    time.sleep(_backoff(attempt))
                    continue
                if attempt > 1:
                    raise FetchError(f"{exc} (after {attempt} tries)", url=exc.url, reason=exc.reason) from exc
                raise
            if (response.status >= 500 or response.status == 429) and attempt <= self.settings.retries:
                wait = response.retry_after
                if wait is None:
                    wait = _backoff(attempt)
                if wait <= self.settings.max_retry_wait:
                    last = response
                    self.count("retries")
                    log.info("%s HTTP %d: retrying in %.1fs (attempt %d)", subject(url), response.status, wait, attempt)
                    time.sleep(wait)
                    continue
            return replace(response, attempts=attempt)

    def _get_once(
        self, url: str, start: str, first_hop: int, lane: int, *, max_bytes: int, headers: Mapping[str, str],
        accept_types: frozenset[str] | None, robots: bool = False,
    ) -> Response:
        """``url``'s request from ``start`` (``url`` itself, or the redirect target it has reached after
        ``first_hop`` hops) in ``start``'s host gate; a hop that leaves that host raises _Elsewhere.

        The total timeout bounds each host's part of the chain (waiting for the next host's gate is not
        the request's slowness), so a chain takes at most max_redirects + 1 of them."""
        started = time.monotonic()
        deadline = started + self.settings.total_timeout
        with request_deadline(deadline):  # every read and write of the request, headers included
            current = start
            for hop in range(first_hop, self.settings.max_redirects + 1):
                check_url(current, self.policy)
                if hop > first_hop and url_host(current) != url_host(start):
                    raise _Elsewhere(current, hop)  # its host's gate, not this one's, is the one to wait for
                if robots and hop:  # a redirect is a page of the host it leads to: that host's robots.txt applies
                    verdict = self.robots.known(current)
                    if verdict is None:
                        raise _Elsewhere(current, hop)
                    if not verdict:
                        raise self._disallowed(url, current)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchError(f"can't fetch {url!r}: slower than the total timeout", url=url, reason="timeout")
                # No single wait (connect, a read) may outlast what is left of the total timeout.
                timeout = httpx.Timeout(min(self.settings.read_timeout, remaining),
                                        connect=min(self.settings.connect_timeout, remaining))
                try:
                    with self._client_for(current, lane) as client, \
                            client.stream("GET", current, headers=dict(headers), timeout=timeout) as raw:
                        if raw.status_code in _REDIRECTS:
                            location = raw.headers.get("location")
                            if not location:
                                raise FetchError(f"can't fetch {url!r}: redirect without Location", url=url, reason="redirect")
                            current = urljoin(current, location.strip())
                            log.debug("%s redirected to %s", subject(url), current)
                            continue
                        response = Response(
                            url=url, final_url=str(raw.url), status=raw.status_code,
                            headers={k.lower(): v for k, v in raw.headers.items()}, body=b"",
                            fetched_at=datetime.now(UTC), elapsed=0.0, redirects=hop,
                        )
                        if accept_types is not None and raw.status_code == 200 and response.content_type not in accept_types:
                            self.count("not_html")
                            return replace(response, skipped=f"not an HTML page ({response.content_type})",
                                           elapsed=time.monotonic() - started)
                        body, truncated = _read_body(raw, max_bytes, deadline, url, self.settings.max_decompression_ratio)
                        if truncated:
                            self.count("truncated")
                        return replace(response, body=body, truncated=truncated, elapsed=time.monotonic() - started)
                except httpx.TimeoutException as exc:
                    why = "slower than the total timeout" if time.monotonic() >= deadline else f"timed out ({exc.__class__.__name__})"
                    raise FetchError(f"can't fetch {url!r}: {why}", url=url, reason="timeout") from exc
                except httpx.InvalidURL as exc:
                    raise BlockedURLError(f"can't fetch {current!r}: invalid URL ({exc})", url=url, reason="url") from exc
                except httpx.TransportError as exc:
                    blocked = _blocked_cause(exc)
                    if blocked is not None:
                        raise BlockedURLError(str(blocked).replace(blocked.url, url, 1), url=url,
                                              reason=blocked.reason) from exc
                    raise FetchError(f"can't fetch {url!r}: {exc or exc.__class__.__name__}", url=url, reason="connect") from exc
            raise FetchError(
                f"can't fetch {url!r}: more than {self.settings.max_redirects} redirects", url=url, reason="redirects"
            )

    # ------------------------------------------------------------------------------------- pages

    def _disallowed(self, url: str, where: str) -> BlockedURLError:
        self.count("robots_disallowed")
        via = "" if where == url else f" (redirected to {where!r})"
        log.info("%s skipped: disallowed by robots.txt for our user agent%s", subject(url), via)
        return BlockedURLError(f"can't fetch {url!r}: disallowed by robots.txt{via}", url=url, reason="robots")

    def get_page(self, url: str, *, max_bytes: int | None = None, _refreshes: int = 0, _hops: int = 0) -> Response:
        """A page: robots.txt permitting (at every redirect hop too), HTML only, the body as UTF-8.

        A page that sends the browser on at once (``<meta http-equiv="refresh" content="0; url=...">``,
        the way redirectors and some CMS short links work) is followed like a redirect, through the same
        guard and robots.txt: its stub has no article, and the entry was lost. Each refresh counts as a
        redirect, and the hops before it count against the page's (``_hops``): max_redirects bounds them all.
        """
        robots = self.settings.respect_robots
        if robots and not self.robots.allowed(url):
            raise self._disallowed(url, url)
        response = self.get(url, max_bytes=max_bytes, accept_types=PAGE_TYPES, robots=robots)
        if _hops + response.redirects > self.settings.max_redirects:
            raise FetchError(f"can't fetch {url!r}: more than {self.settings.max_redirects} redirects and meta"
                             " refreshes", url=url, reason="redirects")
        if response.skipped or response.status != 200 or not response.body:
            return response
        encoding = html_charset(response.body, response.headers.get("content-type", ""))
        body = response.body
        if body.startswith(codecs.BOM_UTF8):
            body = body[len(codecs.BOM_UTF8):]
        elif encoding != "utf-8":
            try:
                body = body.decode(encoding, errors="replace").lstrip("\ufeff").encode("utf-8")
            except (LookupError, UnicodeError) as exc:
                raise FetchError(f"can't fetch {url!r}: its charset {encoding!r} can't decode it ({exc})",
                                 url=url, reason="encoding") from exc
        target = meta_refresh(body, response.final_url)
        if target is None or target == response.final_url:
            return replace(response, body=body, encoding=encoding)
        if _refreshes >= MAX_REFRESHES or _hops + response.redirects >= self.settings.max_redirects:
            raise FetchError(f"can't fetch {url!r}: more than {MAX_REFRESHES} meta refreshes or"
                             f" {self.settings.max_redirects} redirects", url=url, reason="redirects")
        self.count("meta_refresh")
        log.debug("%s refreshes to %s", subject(url), target)
        followed = self.get_page(target, max_bytes=max_bytes, _refreshes=_refreshes + 1,
                                 _hops=_hops + response.redirects + 1)
        return replace(followed, url=url, redirects=response.redirects + 1 + followed.redirects)

    def get_many(self, urls: Sequence[str], *, max_bytes: int | None = None) -> list[Response | FetchError]:
        """Fetch many pages concurrently within the limits; one result per URL, in order."""
        results: list[Response | FetchError | None] = [None] * len(urls)
        for index, result, _ in self.iter_many(urls, max_bytes=max_bytes):
            results[index] = result
        return [r for r in results if r is not None]

    def iter_many(self, urls: Sequence[str], *, max_bytes: int | None = None, window: int | None = None,
                  feeds: Sequence[str | None] | None = None) -> Iterator[tuple[int, Response | FetchError, float]]:
        """Fetch many pages concurrently; yield (index, result, CPU seconds) as each one arrives.

        ``feeds`` names the feed of each URL for the log lines of its fetch (retries, redirects, robots).

        URLs are started round-robin across hosts, so a slow host holds only its own K slots and
        never the threads the other hosts' pages are waiting for. At most ``window`` pages (default:
        twice the global concurrency) are in flight or fetched and not yet taken by the caller, so a
        consumer slower than the network (extraction) bounds the memory the bodies take.
        """
        if not urls:
            return

        def one(index: int) -> tuple[Response | FetchError, float]:
            started = time.thread_time()
            url = urls[index]
            with about_feed(feeds[index] if feeds is not None else None):
                try:
                    result: Response | FetchError = self.get_page(url, max_bytes=max_bytes)
                except FetchError as exc:
                    log.info("%s fetch failed (%s): %s", subject(url), exc.reason, exc)
                    result = exc
            return result, time.thread_time() - started

        by_host: dict[str, list[int]] = defaultdict(list)
        for index, url in enumerate(urls):
            by_host[url_host(url)].append(index)
        order: list[int] = []
        queues = list(by_host.values())
        while queues:
            order.extend(q.pop(0) for q in queues)
            queues = [q for q in queues if q]
        workers = min(self.settings.global_concurrency, len(urls))
        window = max(workers, window or 2 * workers)
        todo = iter(order)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sitrep-fetch") as pool:
            running: dict[Future[tuple[Response | FetchError, float]], int] = {}
            try:
                while True:
                    for index in itertools.islice(todo, window - len(running)):
                        running[pool.submit(one, index)] = index
                    if not running:
                        return
                    done, _ = futures_wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        result, seconds = future.result()
                        yield running.pop(future), result, seconds
            finally:
                for future in running:
                    future.cancel()


#: Meta refreshes followed in a row (each also counts as a redirect against max_redirects).
MAX_REFRESHES = 3
#: A refresh this soon is a redirect; a later one (content="300") is a page that reloads itself.
_REFRESH_NOW_SECONDS = 5.0
_META = re.compile(rb"<meta\b[^>]*>", re.IGNORECASE)
_NOSCRIPT = re.compile(rb"<noscript\b.*?(?:</noscript\s*>|$)", re.IGNORECASE | re.DOTALL)
_REFRESH = re.compile(rb"""http-equiv\s*=\s*["']?\s*refresh\b""", re.IGNORECASE)
_CONTENT = re.compile(rb"""\bcontent\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_REFRESH_URL = re.compile(r"""^\s*(\d+(?:\.\d*)?)\s*[;,]\s*(?:url\s*=\s*)?["']?([^"']+?)["']?\s*$""", re.IGNORECASE)


def meta_refresh(body: bytes, base: str) -> str | None:
    """The http(s) URL a page's head sends the browser to within a few seconds, if any.

    Not one inside ``<noscript>``: that sends only a browser without scripts away ("enable JavaScript"),
    and the page itself is the article.
    """
    head = _NOSCRIPT.sub(b"", body[:32_768])
    end = head.lower().find(b"</head")
    head = head if end < 0 else head[:end]
    for tag in _META.findall(head):
        if not _REFRESH.search(tag):
            continue
        content = _CONTENT.search(tag)
        raw = next((g for g in content.groups() if g is not None), b"") if content else b""
        match = _REFRESH_URL.match(raw.decode("utf-8", errors="replace"))
        if match is None or float(match[1]) > _REFRESH_NOW_SECONDS:
            return None
        target = urljoin(base, html.unescape(match[2].strip()))
        return target if urlsplit(target).scheme in {"http", "https"} else None
    return None


def _blocked_cause(exc: BaseException) -> BlockedURLError | None:
    """The guard's refusal behind a transport error (httpx wraps httpcore wraps ours), if any."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None or isinstance(seen, BlockedURLError):
            return seen
        if isinstance(seen, RefusedConnection):
            return seen.blocked
        seen = seen.__cause__ or seen.__context__
    return None


# --------------------------------------------------------------------------------------- bodies


class _Elsewhere(Exception):  # noqa: N818 - a signal inside Fetcher._get, never raised out of it
    """A redirect leads to another host (or to one whose robots.txt is not known yet): the request goes
    on from ``url``, its ``hops``-th hop, outside the slots it holds."""

    def __init__(self, url: str, hops: int):
        super().__init__(url)
        self.url = url
        self.hops = hops


class _Deferred(Exception):  # noqa: N818 - a signal inside Fetcher._get, never raised out of it
    """A host's delay would start the request past the Fetcher's ``not_after``."""

    def __init__(self, wait: float):
        super().__init__(wait)
        self.wait = wait


class ClosedFetcherError(RuntimeError):
    """A Fetcher used after its ``with`` block: the caller's mistake, never one URL's failure."""


class _Inflater:
    """Content-Encoding undone step by step, never more than _STEP bytes out per call."""

    def __init__(self, encoding: str, url: str):
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip() and c.strip().lower() != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in {"gzip", "x-gzip", "deflate"}):
            raise FetchError(f"can't fetch {url!r}: unsupported Content-Encoding {encoding!r}", url=url, reason="encoding")
        self.coding = codings[0] if codings else None
        # 47 = 32 + 15: a zlib or gzip header, detected; raw deflate is tried when a deflate body has none.
        self._obj = zlib.decompressobj(47) if self.coding else None
        self._first = True
        #: Compressed bytes consumed so far: the denominator of the inflation ratio.
        self.consumed = 0

    @property
    def finished(self) -> bool:
        """The compressed stream has ended: what a server sends after it is not the page (and zlib would
        keep all of it, uncounted, in ``unused_data``)."""
        return self._obj is not None and self._obj.eof

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.finished:
            return
        if self._obj is None:
            for start in range(0, len(data), _STEP):
                self.consumed += len(data[start:start + _STEP])
                yield data[start:start + _STEP]
            return
        if self._first and self.coding == "deflate" and data and (data[0] & 0x0F) != 8:
            self._obj = zlib.decompressobj(-15)
        self._first = False
        while data:
            piece = self._obj.decompress(data, _STEP)
            self.consumed += len(data) - len(self._obj.unconsumed_tail)
            data = self._obj.unconsumed_tail
            yield piece


def _read_body(raw: httpx.Response, max_bytes: int, deadline: float, url: str, max_ratio: int) -> tuple[bytes, bool]:
    """Read a streamed body up to max_bytes of decoded size; refuse bombs; cut at the deadline."""
    inflater = _Inflater(raw.headers.get("content-encoding", ""), url)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in raw.iter_raw():  # as received: re-chunking would wait past the deadline
            for piece in inflater.feed(chunk):
                size += len(piece)
                if size > _BOMB_FLOOR and size > inflater.consumed * max_ratio:
                    raise FetchError(
                        f"can't fetch {url!r}: refused a decompression bomb ({inflater.consumed} bytes inflating past "
                        f"{size} bytes, over {max_ratio}x)", url=url, reason="bomb")
                if size > max_bytes:
                    chunks.append(piece[: max(0, max_bytes - (size - len(piece)))])
                    return b"".join(chunks), True
                chunks.append(piece)
            if inflater.finished:
                break
            if time.monotonic() > deadline:
                raise FetchError(f"can't fetch {url!r}: slower than the total timeout ({size} bytes read)",
                                 url=url, reason="timeout")
    except zlib.error as exc:
        raise FetchError(f"can't fetch {url!r}: corrupt {inflater.coding} body ({exc})", url=url, reason="encoding") from exc
    return b"".join(chunks), False


def _known(name: bytes | str | None) -> str | None:
    """The codec a declared charset names, if it is one that decodes bytes to text.

    Python knows codecs that are no text encoding (``base64``, ``hex``, ``zip``, ``undefined``...): a
    page declaring one is decoded by the other rules, never by it.
    """
    if not name:
        return None
    try:
        text = name.decode("ascii") if isinstance(name, bytes) else name
        codec = codecs.lookup(text.strip().strip("'\"")).name
        b"<p>caf\xc3\xa9 \xff</p>".decode(codec, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return None
    return codec


def html_charset(body: bytes, content_type: str = "") -> str:
    """The charset of an HTML page: BOM, then the Content-Type header, then meta/XML declaration,
    then UTF-8 if it decodes, else the most plausible of the common legacy charsets."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and (found := _known(value)):
            return _utf16_meta_fix(found)
    head = body[:4096]
    match = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    if match and (found := _known(match.group(1))):
        return _utf16_meta_fix(found)
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    matches = list(from_bytes(body[:200_000], cp_isolation=list(_GUESSES)))
    if not matches:
        return "cp1252"
    best = min(m.chaos for m in matches)
    close = [m.encoding for m in matches if m.chaos <= best + 0.02]
    return min(close, key=lambda e: _GUESSES.index(e) if e in _GUESSES else len(_GUESSES))


def _utf16_meta_fix(name: str) -> str:
    """A page that reached us as ASCII-compatible bytes cannot really be UTF-16 (HTML spec rule)."""
    return "utf-8" if name.startswith("utf-16") else name
