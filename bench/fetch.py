"""Incremental polling and bounded fetching, on a loopback server.

1. 200 feeds (2 entries each, with article pages) on a server that supports ETag: a first cycle
   (poll + collect) parses every feed and fetches every page; a second cycle of the same, unchanged
   feeds must fetch 0 pages and parse 0 feeds (all 304). A third cycle against the same server with
   validators ignored shows the body-hash fallback: 200s, but still 0 parsed and 0 pages.
2. Peak RSS of a fresh process fetching a 60 MB page and a gzip bomb through sitrep's client, against
   the same fetch done naively with httpx (``.content``) as the baseline.
3. Client CPU per page: bench/_pagegen.py's article pages (111 KB on average, 8 sites) fetched through
   sitrep's Fetcher, against bare httpx (one ``httpx.Client``, the same 32 threads) as the baseline,
   the server in a process of its own so that only the client is counted. The best of three
   alternating rounds each.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import resource
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from pathlib import Path

from rich.table import Table

from bench import step

TITLE = "fetch: incremental polls (ETag) and bounded memory"
ORDER = 20

MB = 1024 * 1024
HUGE = 60 * MB
BOMB_DECODED = 200 * MB


class _State:
    def __init__(self, feeds: int, per_feed: int) -> None:
        self.feeds, self.per_feed = feeds, per_feed
        self.honour_etag = True
        self.hits: dict[str, int] = {"feed": 0, "feed_304": 0, "page": 0}
        self.lock = threading.Lock()
        self.bomb = gzip.compress(b"\0" * BOMB_DECODED, 9)

    def count(self, key: str) -> None:
        with self.lock:
            self.hits[key] += 1


def _feed(base: str, i: int, per_feed: int) -> bytes:
    items = "".join(
        f"<item><title>Report {i}-{j}</title><link>{base}/a/{i}/{j}.html</link><guid>r-{i}-{j}</guid>"
        f"<pubDate>Tue, 12 Mar 2024 {j:02d}:00:00 GMT</pubDate></item>" for j in range(per_feed))
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Feed {i}</title>'
            f"<link>{base}/</link>{items}</channel></rss>").encode()


def _article(i: int, j: int) -> bytes:
    paragraphs = "".join(
        f"<p>Report {i}-{j}, paragraph {k}: officials in district {i} said emergency crews worked through the night "
        f"after strikes on infrastructure number {j}, restoring power to {k * 100 + i} homes by the morning.</p>"
        for k in range(8))
    return (f"<html><head><meta charset='utf-8'><title>Report {i}-{j}</title></head><body><nav>Home | World</nav>"
            f"<article><h1>Report {i}-{j}</h1>{paragraphs}</article><footer>(c) Bench</footer></body></html>").encode()


def _server(state: _State) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            parts = self.path.strip("/").split("/")
            if parts[0] == "feed":
                body = _feed(base, int(parts[1].split(".")[0]), state.per_feed)
                tag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
                if state.honour_etag and self.headers.get("If-None-Match") == tag:
                    state.count("feed_304")
                    return self._send(304, b"", {"ETag": tag})
                state.count("feed")
                return self._send(200, body, {"Content-Type": "application/rss+xml", "ETag": tag})
            if parts[0] == "a":
                state.count("page")
                return self._send(200, _article(int(parts[1]), int(parts[2].split(".")[0])),
                                  {"Content-Type": "text/html; charset=utf-8"})
            if parts[0] == "bomb":
                return self._send(200, state.bomb, {"Content-Type": "text/html", "Content-Encoding": "gzip"})
            if parts[0] == "huge":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(HUGE))
                self.end_headers()
                chunk = b"<p>" + b"x" * (MB - 3)
                try:
                    for _ in range(HUGE // MB):
                        self.wfile.write(chunk)
                except OSError:
                    pass
                return None
            return self._send(404, b"", {})

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
            return  # clients hanging up at their size cap is the point, not an error

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _cycle(settings, state: _State, label: str) -> list[str]:  # type: ignore[no-untyped-def]
    from sitrep import pipeline

    before = dict(state.hits)
    started = time.perf_counter()
    polled = {"parsed": 0, "not_modified": 0, "unchanged": 0, "new": 0, "feeds": 0}
    for batch in pipeline.plan(settings, due_only=False):
        counts = pipeline.poll_batch(settings, batch, run_id=f"bench-{label}")
        for key in polled:
            polled[key] += counts[key]
        pipeline.collect_batch(settings, batch)
        pipeline.load_batch(settings, batch)
    seconds = time.perf_counter() - started
    fetched = {k: state.hits[k] - before[k] for k in state.hits}
    return [label, str(polled["feeds"]), str(fetched["feed"]), str(fetched["feed_304"]), str(polled["parsed"]),
            str(polled["new"]), str(fetched["page"]), f"{seconds:.2f}"]


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so that imports before the fetch do not hide it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of this process, in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(url: str, naive: bool, cap: int) -> tuple[float, float, str]:
    """In a fresh process: (baseline peak RSS MB, peak RSS MB after the fetch, outcome)."""
    import httpx

    from sitrep.errors import FetchError
    from sitrep.fetch import Fetcher
    from sitrep.settings import FetchSettings

    settings = FetchSettings(allow_private_hosts=True, per_host_delay=0, retries=0, max_page_bytes=cap,
                             respect_robots=False)
    with Fetcher(settings):
        pass  # imports and client set up before the baseline
    _reset_peak()
    base = _rss_mb("VmRSS")
    if naive:
        response = httpx.get(url, timeout=60)
        outcome = f"read {len(response.content) / MB:.0f} MB"
    else:
        with Fetcher(settings) as fetcher:
            try:
                got = fetcher.get(url)
                outcome = f"kept {len(got.body) / MB:.0f} MB" + (" (cut at the cap)" if got.truncated else "")
            except FetchError as exc:
                outcome = f"refused: {exc.reason}"
    return base, _rss_mb(), outcome


def _serve_corpus(root: Path, conn) -> None:  # type: ignore[no-untyped-def]
    """In a process of its own: serve the corpus on loopback until told to stop."""
    from sitrep import demo

    with demo.serve_corpus(root) as sites:
        conn.send({site.root.name: site.base_url for site in sites})
        conn.recv()


def _client_rounds(urls: list[str], rounds: int = 3) -> dict[str, tuple[float, float]]:
    """(CPU seconds, wall seconds) of the best round of each client over the same URLs."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from sitrep.fetch import Fetcher
    from sitrep.settings import FetchSettings

    settings = FetchSettings(allow_private_hosts=True, per_host_delay=0.0, per_host_concurrency=16,
                             global_concurrency=32, respect_robots=False)

    def bare() -> int:
        # Keep-alive for all 32: with httpx's default of 20, the shared pool closes connections it has just
        # handed to waiting requests here ("Bad file descriptor", encode/httpcore#1110).
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        with httpx.Client(timeout=30, limits=limits) as client, ThreadPoolExecutor(max_workers=32) as pool:
            return sum(pool.map(lambda url: len(client.get(url).content), urls))

    def ours() -> int:
        with Fetcher(settings) as fetcher:
            return sum(len(r.body) for r in fetcher.get_many(urls) if not isinstance(r, Exception))

    best: dict[str, tuple[float, float]] = {}
    expected: int | None = None  # the bytes of every page, as the first round of bare httpx got them
    for _ in range(rounds):
        for name, fetch_all in (("bare", bare), ("sitrep", ours)):
            cpu, wall = time.process_time(), time.perf_counter()
            got = fetch_all()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            expected = got if expected is None else expected
            if got != expected or got < len(urls) * 1024:
                raise RuntimeError(f"{name}: {got} bytes for {len(urls)} pages, not the {expected} bare httpx got")
            if name not in best or cpu < best[name][0]:
                best[name] = (cpu, wall)
    return best


def _client_cpu(args: argparse.Namespace) -> Table:
    from bench._pagegen import build_corpus

    table = Table(title="client CPU per page: sitrep's Fetcher vs bare httpx (same pages, same 32 threads)")
    for col in ("pages", "KB/page", "bare httpx CPU ms/page", "sitrep CPU ms/page", "ratio", "bare pages/s",
                "sitrep pages/s"):
        table.add_column(col, justify="right")
    for size in [2000] + ([5000] if args.full else []):
        step(f"client CPU: {size} pages, sitrep's Fetcher and bare httpx")
        corpus = build_corpus(size)
        parent, child = get_context("spawn").Pipe()
        server = get_context("spawn").Process(target=_serve_corpus, args=(corpus.root, child), daemon=True)
        server.start()
        try:
            bases = parent.recv()
            urls = []
            for page in corpus.pages:
                site, *rest = page.relative_to(corpus.root / "sites").parts
                urls.append(f"{bases[site]}/{'/'.join(rest)}")
            best = _client_rounds(urls)
        finally:
            parent.send("stop")
            server.join(30)
        kb = sum(page.stat().st_size for page in corpus.pages) / len(corpus.pages) / 1024
        (bare_cpu, bare_wall), (our_cpu, our_wall) = best["bare"], best["sitrep"]
        table.add_row(str(size), f"{kb:.0f}", f"{1000 * bare_cpu / size:.2f}", f"{1000 * our_cpu / size:.2f}",
                      f"{our_cpu / bare_cpu:.2f}", f"{size / bare_wall:.0f}", f"{size / our_wall:.0f}")
    table.caption = ("sitrep's client also guards every connection (SSRF), caps and decodes bodies, keeps per-host"
                     " limits and hands pages on as UTF-8; it keeps a connection pool per origin and per-host lane. The baseline keeps"
                     " 32 connections alive: with httpx's default of 20 it fails here (encode/httpcore#1110)")
    return table


def run(args: argparse.Namespace) -> list[Table]:
    from sitrep import db, sources
    from sitrep.settings import FetchSettings, Settings

    n_feeds = 1000 if args.full else 200
    state = _State(n_feeds, per_feed=2)
    server = _server(state)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    polls = Table(title=f"{n_feeds} feeds x 2 entries: a first cycle, then the same feeds unchanged")
    for col in ("cycle", "feeds", "feed bodies (200)", "304s", "feeds parsed", "new entries", "pages fetched", "s"):
        polls.add_column(col, justify="right")
    try:
        with tempfile.TemporaryDirectory(prefix="sitrep-bench-fetch-") as tmp:
            pg = db.EmbeddedPostgres(Path(tmp) / "pg")
            try:
                url = pg.start("bench_fetch")
                with db.connect(url) as conn:
                    db.migrate(conn)
                    sources.add_feeds(conn, [sources.FeedSpec(url=f"{base}/feed/{i}.xml", name=f"feed {i}")
                                             for i in range(n_feeds)])
                settings = Settings(database_url=url, home=Path(tmp), workers=2, batch_sources=50, fetch=FetchSettings(
                    allow_private_hosts=True, per_host_delay=0.0, per_host_concurrency=16, global_concurrency=32))
                step("poll cycles: the first, then the same feeds unchanged (ETag, then the body hash)")
                rows = [_cycle(settings, state, "1 first")]
                rows.append(_cycle(settings, state, "2 unchanged (ETag)"))
                state.honour_etag = False
                rows.append(_cycle(settings, state, "3 unchanged (no 304: body hash)"))
                for row in rows:
                    polls.add_row(*row)
                first = float(rows[0][-1])
                polls.caption = (f"time of the unchanged poll vs the first: {float(rows[1][-1]) / first:.3f}x with ETag, "
                                 f"{float(rows[2][-1]) / first:.3f}x with the body hash only")
            finally:
                pg.stop()

        memory = Table(title="peak RSS of a fresh process fetching hostile bodies (page cap 10 MB)")
        for col in ("body", "client", "outcome", "RSS before MB", "peak RSS MB", "growth MB", "growth vs naive"):
            memory.add_column(col, justify="right")
        ctx = get_context("spawn")
        for path, label in (("/huge", "60 MB page"), ("/bomb", f"gzip bomb ({len(state.bomb) // 1024} KB -> 200 MB)")):
            step(f"peak RSS: a {label}")
            results = {}
            for naive in (True, False):
                with ctx.Pool(1) as pool:
                    results[naive] = pool.apply(_measure, (base + path, naive, 10 * MB))
            naive_growth = results[True][1] - results[True][0]
            for naive in (True, False):
                before, peak, outcome = results[naive]
                growth = peak - before
                memory.add_row(label, "httpx .content (baseline)" if naive else "sitrep Fetcher", outcome,
                               f"{before:.0f}", f"{peak:.0f}", f"{growth:.0f}",
                               f"{growth / naive_growth:.2f}x" if naive_growth > 0 else "-")
    finally:
        server.shutdown()
        server.server_close()
    return [polls, memory, _client_cpu(args)]


__all__ = ["ORDER", "TITLE", "run"]
